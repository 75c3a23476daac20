"""The experiment grid file: which base config, which methods, folds, seeds and ablations; expanded to runs.

A grid file (YAML; shipped ones in ``rlar/configs/experiments/``, e.g. ``rlar experiment --config ddti``)::

    name: ddti_table1
    base: ddti:cpu                 # a shipped training config name[:size], or a path (relative to this file)
    overrides: [data.root=../shared/data/ddti]
    methods: [seg_only, vanilla_mtl, guided_mtl, rlar, repmtl, pcgrad, cagrad, nashmtl, uncertainty]
    folds: all                     # or a list such as [0, 1]
    seeds: [0]
    reference: vanilla_mtl         # every method is compared with it; rlar is also compared with guided_mtl
    ablations: {rlar_layer: {}, lambda_sweep: {values: [0.03, 0.3, 3.0]}}
    external: [{name: tn3k, source: folder, root: /data/tn3k}]

Every run of the grid is one arm (a method plus overrides) x one seed (``training.seed``) x one fold; its folder is
``<out>/<arm>/seed<k>/fold<j>``. All runs read the same ``<out>/splits.json`` (``data.split_file``), written once,
so every comparison is paired on the same test images. Precedence of settings, lowest first: the base file, its
size, the grid's ``overrides``, the arm's overrides, then seed/fold/split file/device set by the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlar.errors import ConfigError, config_error_from
from rlar.experiments.arms import Arm, TableSpec, merge_arms, reference_comparisons
from rlar.experiments.presets import expand_preset
from rlar.runs import GRID_FILE, GRID_SPLITS, grid_run_rel

#: The method every row is compared with unless the grid says otherwise (the paper's vanilla multitask).
DEFAULT_REFERENCE = "vanilla_mtl"


class ExternalSource(BaseModel):
    """A second dataset every fold model is also tested on (train on one source, test on another)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="label in tables and folder name: <run>/external/<name>/")
    source: str = Field(description="source name (rlar.data.sources)")
    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class GridConfig(BaseModel):
    """A validated grid file (see the module docstring); unknown keys are errors naming them."""

    model_config = ConfigDict(extra="forbid")

    name: str = "grid"
    base: str = Field(description="training config: shipped name[:size] or a YAML path")
    overrides: list[str] = Field(default_factory=list, description="key=value overrides of the base config")
    methods: list[str] = Field(default_factory=list, description="the main table's methods")
    folds: list[int] | Literal["all"] = "all"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    reference: str = DEFAULT_REFERENCE
    comparisons: list[tuple[str, str]] | None = Field(
        None, description="main-table pairs (a, b) tested as a - b; default: each method vs the reference, and "
        "rlar vs guided_mtl")
    ablations: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    external: list[ExternalSource] = Field(default_factory=list)
    base_dir: str | None = Field(None, description="folder relative paths are read from (set by load_grid)")

    @field_validator("overrides", mode="before")
    @classmethod
    def _mapping_to_list(cls, value: Any) -> Any:
        if isinstance(value, dict):  # also accept {key: value}
            return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                    for k, v in value.items()]
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        from rlar.training.config import METHOD_NAMES

        for m in value:
            if m not in METHOD_NAMES:
                raise ValueError(f"unknown method '{m}' (methods: {', '.join(METHOD_NAMES)})")
        if len(set(value)) != len(value):
            raise ValueError("a method is listed twice")
        return value

    @field_validator("folds")
    @classmethod
    def _folds(cls, value: list[int] | str) -> list[int] | str:
        if isinstance(value, list) and (any(f < 0 for f in value) or len(set(value)) != len(value)):
            raise ValueError(f"folds must be distinct non-negative fold indices, got {value}")
        return value

    def base_path(self) -> tuple[Path, str | None]:
        """(training config file, size) of ``base``; a relative file path is read from ``base_dir``."""
        from rlar.training.config import find_config

        name = self.base
        if self.base_dir is not None and not Path(name).is_absolute():
            candidate = Path(self.base_dir) / name
            if candidate.is_file():
                name = str(candidate)
        return find_config(name)


def shipped_grid_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs" / "experiments"


def shipped_grid_names() -> list[str]:
    return sorted(p.stem for p in shipped_grid_dir().glob("*.yaml"))


def load_grid(name_or_path: str | Path) -> GridConfig:
    """Read a grid file, or a shipped grid by name (``ddti``, ``phantom_smoke`` ...); ConfigError on bad keys."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_grid_dir() / f"{name_or_path}.yaml"
        if not shipped.is_file():
            raise ConfigError("--config", f"'{name_or_path}' is neither a file nor a shipped grid "
                                          f"(shipped: {', '.join(shipped_grid_names())})")
        path = shipped
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read the grid file ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "a grid file must be a YAML mapping")
    raw.setdefault("base_dir", str(path.resolve().parent))
    return validate_grid(raw)


def validate_grid(raw: dict[str, Any]) -> GridConfig:
    try:
        return GridConfig.model_validate(raw)
    except ValidationError as err:
        raise config_error_from(err, model=GridConfig, what="the grid file") from None


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    arm: Arm
    seed: int
    fold: int

    @property
    def rel_dir(self) -> Path:
        return grid_run_rel(self.arm.name, self.seed, self.fold)

    @property
    def label(self) -> str:
        return f"{self.arm.name} seed {self.seed} fold {self.fold}"


@dataclass(frozen=True)
class ExpandedGrid:
    """A grid file made concrete: its arms, tables, folds and seeds, and the base config's fold count."""

    grid: GridConfig
    arms: tuple[Arm, ...]
    tables: tuple[TableSpec, ...]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    n_folds: int

    def runs(self) -> list[RunSpec]:
        """Every run, ordered seed -> fold -> arm: the first finished runs already give paired comparisons."""
        return [RunSpec(arm, seed, fold) for seed in self.seeds for fold in self.folds for arm in self.arms]

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid.model_dump(mode="json", exclude={"base_dir"}),
                "arms": [a.to_dict() for a in self.arms], "tables": [t.to_dict() for t in self.tables],
                "folds": list(self.folds), "seeds": list(self.seeds), "n_folds": self.n_folds}


def _main_table(grid: GridConfig) -> tuple[list[Arm], TableSpec | None]:
    if not grid.methods:
        return [], None
    arms = [Arm(m, m) for m in grid.methods]
    names = tuple(grid.methods)
    if grid.comparisons is not None:
        pairs = tuple((str(a), str(b)) for a, b in grid.comparisons)
    else:
        pairs = reference_comparisons(names, grid.reference)
    return arms, TableSpec("main", f"All methods ({grid.name})", names, pairs)


def expand(grid: GridConfig, methods: list[str] | None = None, folds: list[int] | None = None,
           seeds: list[int] | None = None) -> ExpandedGrid:
    """Arms, tables and the run list, optionally restricted (``--methods`` keeps arms whose method or name is
    listed; ``--folds``/``--seeds`` select among the grid's)."""
    from rlar.training.config import load_config

    arm_groups: list[list[Arm]] = []
    tables: list[TableSpec] = []
    arms, main = _main_table(grid)
    if main is not None:
        arm_groups.append(arms)
        tables.append(main)
    for name, options in grid.ablations.items():
        preset_arms, preset_tables = expand_preset(name, options)
        arm_groups.append(preset_arms)
        tables.extend(preset_tables)
    all_arms = merge_arms(arm_groups)
    if not all_arms:
        raise ConfigError("methods", "the grid has no methods and no ablations: nothing to run")

    path, size = grid.base_path()
    base = load_config(path, list(grid.overrides), size=size)
    n_folds = base.data.n_folds
    grid_folds = list(range(n_folds)) if grid.folds == "all" else list(grid.folds)
    bad = [f for f in grid_folds if f >= n_folds]
    if bad:
        raise ConfigError("folds", f"fold(s) {bad} out of range: the base config has n_folds={n_folds}")
    if folds is not None:
        missing = [f for f in folds if f not in grid_folds]
        if missing:
            raise ConfigError("--folds", f"fold(s) {missing} are not folds of this grid ({grid_folds})")
        grid_folds = [f for f in grid_folds if f in folds]
    grid_seeds = list(grid.seeds)
    if seeds is not None:
        missing = [s for s in seeds if s not in grid_seeds]
        if missing:
            raise ConfigError("--seeds", f"seed(s) {missing} are not seeds of this grid ({grid_seeds})")
        grid_seeds = [s for s in grid_seeds if s in seeds]
    if methods is not None:
        chosen = [a for a in all_arms if a.name in methods or a.method in methods]
        if not chosen:
            raise ConfigError("--methods", f"no arm of this grid matches {methods} "
                                           f"(arms: {', '.join(a.name for a in all_arms)})")
        all_arms = chosen
    return ExpandedGrid(grid, tuple(all_arms), tuple(tables), tuple(grid_folds), tuple(grid_seeds), n_folds)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/8"`` -> (2, 8): the 0-based shard index and the shard count; None for no sharding."""
    if text is None:
        return None
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ConfigError("--shard", f"expected i/n such as 0/4, got '{text}'") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise ConfigError("--shard", f"expected i/n with 0 <= i < n, got '{text}'")
    return i, n


def take_shard(runs: list[RunSpec], shard: tuple[int, int] | None) -> list[RunSpec]:
    """Every n-th run starting at i: disjoint shards that together cover the grid (a job array's slice)."""
    if shard is None:
        return runs
    i, n = shard
    return runs[i::n]


def parse_int_list(text: str | None, key: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(key, f"expected comma-separated integers, got '{text}'") from None


__all__ = ["DEFAULT_REFERENCE", "GRID_FILE", "GRID_SPLITS", "ExpandedGrid", "ExternalSource", "GridConfig",
           "RunSpec", "expand", "load_grid", "parse_int_list", "parse_shard", "shipped_grid_names", "take_shard",
           "validate_grid"]
