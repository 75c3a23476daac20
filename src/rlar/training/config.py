"""The training configuration: pydantic models, YAML loading with ``--set key=value`` overrides, method presets.

A YAML file mirrors :class:`RlarConfig`. Two extras exist only in files:

- ``sizes: {cpu: {...}, paper: {...}}``: named sets of overrides (nested like the config itself), and
- ``size: cpu``: which of them to apply (``--set size=paper`` or the CLI's ``--size`` switch it).

Precedence, lowest first: model defaults < method preset < file < selected size < ``--set`` overrides.
Every section forbids unknown keys, so a misspelt key is an error naming its full dotted path instead of a
silently ignored setting. The method preset (``method: rlar`` ...) fills architecture, backbone, strategy and
the radiomics guidance switch only where the user left them unset (``null``), and the resolved values are what
``dump_config`` writes, so a run's ``config.yaml`` reproduces it without knowing the preset table.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlar.errors import ConfigError

MethodName = Literal[
    "seg_only",
    "cls_efficientnet",
    "cls_convnext",
    "vanilla_mtl",
    "guided_mtl",
    "rlar",
    "repmtl",
    "pcgrad",
    "cagrad",
    "nashmtl",
    "uncertainty",
]


class MethodPreset(BaseModel):
    """One row of the method table in docs/interfaces.md."""

    model_config = ConfigDict(frozen=True)

    arch: Literal["multitask", "segmentation", "classification"]
    backbone: str
    strategy: str
    guided: bool  # the 13-dim TI-RADS-aligned radiomics guidance (rad loss) is on


_MTL = dict(arch="multitask", backbone="compact")
PRESETS: dict[str, MethodPreset] = {
    "seg_only": MethodPreset(arch="segmentation", backbone="compact", strategy="sum", guided=False),
    "cls_efficientnet": MethodPreset(arch="classification", backbone="efficientnet-b0", strategy="sum", guided=False),
    "cls_convnext": MethodPreset(arch="classification", backbone="convnext", strategy="sum", guided=False),
    "vanilla_mtl": MethodPreset(**_MTL, strategy="sum", guided=False),
    "guided_mtl": MethodPreset(**_MTL, strategy="sum", guided=True),
    "rlar": MethodPreset(**_MTL, strategy="rlar", guided=True),
    **{name: MethodPreset(**_MTL, strategy=name, guided=False) for name in ("repmtl", "pcgrad", "cagrad", "nashmtl", "uncertainty")},
}
METHOD_NAMES: tuple[str, ...] = tuple(PRESETS)
# Names accepted by rlar.strategies.get_strategy (repeated, not imported, so that reading a config needs no torch).
STRATEGY_CHOICES: tuple[str, ...] = ("sum", "rlar", "repmtl", "pcgrad", "cagrad", "nashmtl", "uncertainty")


class _Section(BaseModel):
    # validate_assignment: values set after construction (CLI flags) are checked like file values.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images come from and how they are split and presented."""

    source: str = Field("phantom", description="source name: ddti, thyroidxl, aimi, folder, phantom")
    root: str | None = Field(None, description="dataset folder (None only for the phantom)")
    options: dict[str, Any] = Field(default_factory=dict, description="source constructor options, e.g. n_cases")
    image_size: tuple[int, int] = Field((128, 128), description="network input size (H, W); an int means square")
    task: Literal["multiclass", "binary"] = "multiclass"
    n_folds: int = Field(5, ge=2)
    fold: int = Field(0, ge=0)
    split_file: str | None = Field(None, description="user split file (checked for patient leakage)")
    seed: int = Field(0, description="seed of the fold assignment (independent of the training seed)")
    cache_dir: str | None = Field(None, description="radiomics target cache; default ~/.cache/rlar")
    num_workers: int = Field(0, ge=0)
    augment: bool = True

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("image_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError(f"image size {value} is too small (each side must be >= 8)")
        return value

    @model_validator(mode="after")
    def _fold_in_range(self) -> DataConfig:
        if self.fold >= self.n_folds:
            # ConfigError passes through pydantic unchanged, so the message can name the exact key.
            raise ConfigError("data.fold", f"fold {self.fold} is out of range for n_folds={self.n_folds} (0-based)")
        return self


class ModelConfig(_Section):
    arch: Literal["multitask", "segmentation", "classification"] | None = Field(None, description="null: from method")
    backbone: str | None = Field(None, description="null: from method")
    deep_dim: int = Field(64, ge=1, description="size of the free part h_deep of the classification embedding")
    tirads_dim: int = Field(13, ge=1, description="size of the radiomics-aligned part h_tirads")
    pretrained_path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="extra build_model keyword arguments")


class StrategyConfig(_Section):
    """The gradient strategy: name from the method preset unless set.

    ``options`` maps a strategy name to its keyword options, and only the entry of the strategy in use is passed
    to ``get_strategy``; so one file can carry tuned options for several methods and ``--set method=pcgrad``
    works without editing it. Example::

        options:
          rlar: {layers: [bottleneck], tau: 0.0, p: 2, absolute: false, lambda: 0.1, warmup_steps: 0}
          cagrad: {c: 0.4}

    Unknown options are reported by the strategy itself when the run builds it, under
    ``strategy.options.<name>.<option>``.
    """

    name: str | None = Field(None, description="null: from method")
    tasks: dict[str, list[str]] | None = Field(None, description="task -> loss keys; null: derived from the method")
    representation: str = Field("bottleneck", description="z: where task directions are compared (and logged)")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _known_strategies(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(value) - set(STRATEGY_CHOICES))
        if unknown:
            raise ConfigError(f"strategy.options.{unknown[0]}",
                              f"not a strategy name (strategies: {', '.join(STRATEGY_CHOICES)})")
        return value

    @property
    def selected_options(self) -> dict[str, Any]:
        """Options of the strategy in use."""
        return dict(self.options.get(self.name or "", {}))


class LossWeights(_Section):
    seg: float | None = Field(None, ge=0, description="null: 1 if the method has the segmentation task, else 0")
    cls: float | None = Field(None, ge=0, description="null: 1 if the method has the classification task, else 0")
    rad: float | None = Field(None, ge=0, description="null: 1 if radiomics guidance is on, else 0")


class LossConfig(_Section):
    weights: LossWeights = Field(default_factory=LossWeights)
    class_weights: str | list[float] = Field(
        "auto", description="'auto': balanced weights from the training fold's label counts; 'none'; or a list"
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("class_weights", mode="before")
    @classmethod
    def _class_weights(cls, value: Any) -> Any:
        # Checked by hand: a str|list union would report one confusing error per union branch.
        if isinstance(value, str):
            if value not in ("auto", "none"):
                raise ValueError(f"must be 'auto', 'none' or a list of numbers, got '{value}'")
            return value
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
                    raise ValueError(f"item {i} ({item!r}) is not a non-negative number")
            return [float(v) for v in value]
        raise ValueError(f"must be 'auto', 'none' or a list of numbers, got {value!r}")


class RadiomicsConfig(_Section):
    enabled: bool | None = Field(None, description="null: from method (on for guided_mtl and rlar)")
    exclude_feature: str | None = Field(None, description="leave-one-out ablation: this feature's target is zeroed")
    params: dict[str, Any] = Field(default_factory=dict, description="RadiomicsParams fields")


class OptimConfig(_Section):
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(500, ge=1)
    batch_size: int = Field(8, ge=1)
    warmup_epochs: float = Field(5, ge=0, description="linear warm-up length before the cosine decay")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; null disables clipping")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU/MPS)")


class TrainingConfig(_Section):
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 0
    deterministic: bool = True
    early_stopping_patience: int | None = Field(None, ge=1, description="validations without improvement; null: off")
    val_every: int = Field(1, ge=1, description="epochs between validations")
    checkpoint_every: int = Field(1, ge=1, description="epochs between 'last' checkpoints")
    log_every: int = Field(10, ge=1, description="steps between TensorBoard step scalars")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads (null: torch's default); 1 is often fastest on a shared CPU"
    )


class RlarConfig(_Section):
    """A full training run. ``resolve`` semantics: preset-derived fields are filled after validation."""

    method: MethodName = "rlar"
    size: str | None = Field(None, description="which entry of the file's 'sizes' was applied (provenance)")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    radiomics: RadiomicsConfig = Field(default_factory=RadiomicsConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: str = Field("runs/rlar", description="default output folder of `rlar train`")

    @model_validator(mode="after")
    def _apply_preset(self) -> RlarConfig:
        preset = PRESETS[self.method]
        # Assigning through object.__setattr__ avoids re-running validation recursively on each fill.
        model, strategy, loss, rad = self.model, self.strategy, self.loss, self.radiomics
        if model.arch is None:
            object.__setattr__(model, "arch", preset.arch)
        if model.backbone is None:
            object.__setattr__(model, "backbone", preset.backbone)
        if strategy.name is None:
            object.__setattr__(strategy, "name", preset.strategy)
        if rad.enabled is None:
            object.__setattr__(rad, "enabled", preset.guided and model.arch == "multitask")
        has_seg = model.arch in ("multitask", "segmentation")
        has_cls = model.arch in ("multitask", "classification")
        weights = loss.weights
        if weights.seg is None:
            object.__setattr__(weights, "seg", 1.0 if has_seg else 0.0)
        if weights.cls is None:
            object.__setattr__(weights, "cls", 1.0 if has_cls else 0.0)
        if weights.rad is None:
            object.__setattr__(weights, "rad", 1.0 if rad.enabled else 0.0)
        if weights.rad and not rad.enabled:
            raise ConfigError("loss.weights.rad", "> 0 needs radiomics.enabled: true (there would be no targets)")
        if rad.enabled and model.arch != "multitask":
            raise ConfigError("radiomics.enabled", f"guidance needs the multitask architecture, not '{model.arch}'")
        if strategy.name not in STRATEGY_CHOICES:
            raise ConfigError("strategy.name", f"unknown strategy '{strategy.name}' (choose from {', '.join(STRATEGY_CHOICES)})")
        if strategy.tasks is None:
            # Every loss key the model produces belongs to a task (a key outside every task would become a task of
            # its own in the strategy); the guidance loss is part of the classification task as in the paper.
            tasks: dict[str, list[str]] = {}
            if has_seg:
                tasks["seg"] = ["seg"]
            if has_cls:
                tasks["cls"] = ["cls", "rad"] if rad.enabled else ["cls"]
            object.__setattr__(strategy, "tasks", tasks)
        if not (weights.seg or weights.cls or weights.rad):
            raise ConfigError("loss.weights", "every loss weight is 0; nothing to train")
        return self

    @property
    def task_names(self) -> list[str]:
        return list(self.strategy.tasks or {})


# ----------------------------------------------------------------------------------------------------------------
# Loading and saving


def _from_validation_error(err: ValidationError) -> ConfigError:
    """The first pydantic error as a ConfigError naming the full dotted key and the reason."""
    first = err.errors()[0]
    # Drop pydantic's union-branch labels (e.g. 'literal['auto','none']') so the key is what the user typed.
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    key = ".".join(str(p) for p in loc) or "<config>"
    if first["type"] == "extra_forbidden":
        return ConfigError(key, "unknown key (check the spelling; see rlar/training/config.py for the schema)")
    reason = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("value_error", "assertion_error") and "input" in first:
        reason += f" (got {first['input']!r})"
    more = len(err.errors()) - 1
    if more:
        reason += f"; and {more} more error(s)"
    return ConfigError(key, reason)


def validate_config(raw: dict[str, Any]) -> RlarConfig:
    """Validate a plain dict (already merged) into an :class:`RlarConfig`; errors become ConfigError."""
    try:
        return RlarConfig.model_validate(raw)
    except ValidationError as err:
        raise _from_validation_error(err) from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 0.0003). The value is read as YAML (numbers, lists, null ...)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(item, "an override must look like key=value, e.g. optim.lr=3e-4")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(key, "empty component in dotted key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"value {value!r} is not valid YAML ({exc})") from None
    # YAML reads "1e-4" as a string (it needs a dot); users mean a number.
    if isinstance(parsed, str):
        try:
            parsed = float(parsed) if parsed.lower() not in ("nan", "inf", "-inf", "infinity") else parsed
        except ValueError:
            pass
    return parts, parsed


def _set_nested(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: depth + 1]), f"is a value ({child!r}), not a section")
        node = child
    node[parts[-1]] = value


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Neither input is modified."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "a config file must be a YAML mapping of sections")
    return data


def resolve_raw(raw: dict[str, Any], overrides: list[str] | None = None, size: str | None = None) -> dict[str, Any]:
    """Apply the selected size and the ``--set`` overrides to a raw config dict (no validation yet)."""
    raw = copy.deepcopy(raw)
    sizes = raw.pop("sizes", None) or {}
    if not isinstance(sizes, dict):
        raise ConfigError("sizes", "must be a mapping of size name -> overrides")
    parsed = [parse_override(item) for item in overrides or []]
    # The size is chosen before the other overrides apply, so `--set size=paper --set optim.lr=1` keeps lr=1.
    for parts, value in parsed:
        if parts == ["size"]:
            size = value
    if size is None:
        size = raw.get("size")
    if size is not None:
        if size not in sizes:
            known = ", ".join(sizes) or "none defined in this file"
            raise ConfigError("size", f"unknown size '{size}'; choose one of: {known}")
        if not isinstance(sizes[size], dict):
            raise ConfigError(f"sizes.{size}", "must be a mapping of overrides")
        raw = deep_merge(raw, sizes[size])
        raw["size"] = size
    for parts, value in parsed:
        if parts != ["size"]:
            _set_nested(raw, parts, value)
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None, size: str | None = None) -> RlarConfig:
    """Read a YAML config (``None``: defaults only), apply ``size`` and ``key=value`` overrides, validate.

    Raises ConfigError naming the full dotted key for an unknown key, a wrong type or an invalid value.
    """
    raw = read_yaml(path) if path is not None else {}
    return validate_config(resolve_raw(raw, overrides, size))


def config_to_dict(cfg: RlarConfig) -> dict[str, Any]:
    """Plain JSON-compatible dict (tuples become lists): storable in checkpoints and YAML."""
    return cfg.model_dump(mode="json")


def dump_config(cfg: RlarConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (presets expanded), loadable again with :func:`load_config`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


# ----------------------------------------------------------------------------------------------------------------
# Shipped configs (src/rlar/configs/*.yaml, installed with the package)


def shipped_config_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs"


def shipped_config_names() -> list[str]:
    return sorted(p.stem for p in shipped_config_dir().glob("*.yaml"))


def find_config(name_or_path: str) -> tuple[Path, str | None]:
    """A config file path, or a shipped name optionally with a size: ``phantom``, ``ddti:cpu``.

    Returns (path, size or None). An existing file wins over a shipped name of the same spelling.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate, None
    name, _, size = name_or_path.partition(":")
    shipped = shipped_config_dir() / f"{name}.yaml"
    if shipped.is_file():
        return shipped, size or None
    raise ConfigError(
        "config",
        f"'{name_or_path}' is neither a file nor a shipped config (shipped: {', '.join(shipped_config_names())})",
    )
