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

import contextlib
import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from rlar.environment import DEFAULT_DEVICE, Device
from rlar.errors import ConfigError, config_error_from
from rlar.prediction import PredictionOptions
from rlar.tasks import (
    EXTRA_TASKS_OPTION,
    RAD,
    RADIOMICS_DIM,
    TASK_NAMES,
    TASKS,
    default_grouping,
    extra_tasks_of,
    trained_tasks,
)
from rlar.training.presets import METHOD_NAMES, PRESETS, MethodPreset

__all__ = ["METHOD_NAMES", "PRESETS", "MethodPreset", "RlarConfig", "load_config", "parse_value", "strategy_choices"]


def strategy_choices() -> tuple[str, ...]:
    """Names of the registered gradient strategies (``rlar.strategies``; imported lazily, it needs torch)."""
    from rlar.strategies import STRATEGIES

    return tuple(STRATEGIES)


class _Section(BaseModel):
    # validate_assignment: values set after construction (CLI flags) are checked like file values.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images come from and how they are split and presented."""

    source: str = Field(default="phantom", description="source name: ddti, thyroidxl, aimi, folder, phantom")
    root: str | None = Field(default=None, description="dataset folder (None only for the phantom)")
    options: dict[str, Any] = Field(default_factory=dict, description="source constructor options, e.g. n_cases")
    image_size: tuple[int, int] = Field(default=(128, 128), description="network input size (H, W); an int means square")
    task: Literal["multiclass", "binary"] = "multiclass"
    n_folds: int = Field(default=5, ge=2)
    fold: int = Field(default=0, ge=0)
    split_file: str | None = Field(default=None, description="user split file (checked for group leakage on all three sides)")
    seed: int = Field(default=0, description="seed of the fold assignment (independent of the training seed)")
    val_fraction: float = Field(
        default=0.2, gt=0.0, le=0.5,
        description="share of each outer training set held out (grouped, stratified) as the inner validation split "
                    "that selects the checkpoint and drives early stopping; one fold of round(1/val_fraction)",
    )
    group_by_content: bool = Field(
        default=True, description="merge patients whose images are identical or near-identical into one split group",
    )
    near_duplicate_bits: int = Field(
        default=16, ge=0, le=256, description="dHash distance (bits of 256) at or below which two images are near-identical",
    )
    cache_dir: str | None = Field(default=None, description="radiomics target cache; default ~/.cache/rlar")
    num_workers: int = Field(default=0, ge=0)
    augment: bool = True
    augmentation: dict[str, Any] = Field(
        default_factory=dict,
        description="training augmentation options (rlar.data.augment.AugmentOptions; empty: the shipped defaults)",
    )

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

    @model_validator(mode="after")
    def _typed_options(self) -> DataConfig:
        # Checked while the config loads (not when the run opens the source or builds the dataset), so a misspelt
        # option fails before any work and names its key: data.options.<key>, data.augmentation.<field>.
        from rlar.data.augment import validate_augment_options
        from rlar.data.sources import validate_source_options

        validate_source_options(self.source, dict(self.options))
        validate_augment_options(self.augmentation, key="data.augmentation")
        return self


class ModelConfig(_Section):
    arch: Literal["multitask", "segmentation", "classification"] | None = Field(default=None, description="null: from method")
    backbone: str | None = Field(default=None, description="null: from method")
    deep_dim: int = Field(default=64, ge=1, description="size of the free part h_deep of the classification embedding")
    tirads_dim: int = Field(default=RADIOMICS_DIM, ge=1, description="size of the radiomics-aligned part h_tirads")
    pretrained_path: str | None = None
    options: dict[str, Any] = Field(
        default_factory=dict, description="backbone options (validated by rlar.models.validate_backbone_options)",
    )


class StrategyConfig(_Section):
    """The gradient strategy: name from the method preset unless set.

    ``options`` maps a strategy name to its keyword options, and only the entry of the strategy in use is passed
    to ``get_strategy``; so one file can carry tuned options for several methods and ``--set method=pcgrad``
    works without editing it. Example::

        options:
          rlar: {tau: 0.0, lambda_rlar: 0.5}
          cagrad: {c: 0.4}

    Every entry is validated while the config loads by the strategy's own typed ``Options`` model
    (``rlar.strategies.validate_strategy_options``), so a bad value is an error naming
    ``strategy.options.<name>.<option>``; the defaults live in those models only.
    """

    name: str | None = Field(default=None, description="null: from method")
    tasks: dict[str, list[str]] | None = Field(default=None, description="task -> loss keys; null: derived from the method")
    representation: str = Field(default="bottleneck", description="z: where task directions are compared (and logged)")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def selected_options(self) -> dict[str, Any]:
        """Options of the strategy in use."""
        return dict(self.options.get(self.name or "", {}))


# One weight per task of the task table (rlar.tasks): null = 1 if the method trains that task, else 0.
if TYPE_CHECKING:  # a model built at run time: the type checker sees its base
    LossWeights = _Section
else:
    LossWeights = create_model(
        "LossWeights",
        __base__=_Section,
        __doc__="Weight of each task's loss (keys: rlar.tasks.TASK_NAMES).",
        **{name: (float | None, Field(default=None, ge=0, description=f"null: 1 if the method trains '{name}' "
                                      f"({TASKS[name].description}), else 0")) for name in TASK_NAMES},
    )


def loss_weights(cfg: RlarConfig) -> dict[str, float]:
    """Resolved loss weight per task name (after the preset filled the unset ones); an optional task only when the
    network has its head (``model.options.extra_tasks``)."""
    extra = extra_tasks_of(cfg.model.options)
    return {name: float(getattr(cfg.loss.weights, name) or 0.0) for name in TASK_NAMES
            if not TASKS[name].optional or name in extra}


class LossConfig(_Section):
    weights: LossWeights = Field(default_factory=LossWeights)
    class_weights: str | list[float] = Field(
        default="auto", description="'auto': balanced weights from the training fold's label counts; 'none'; or a list"
    )
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)

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
    enabled: bool | None = Field(default=None, description="null: from method (on for guided_mtl and rlar)")
    exclude_feature: str | None = Field(default=None, description="leave-one-out ablation: this feature's target is zeroed")
    params: dict[str, Any] = Field(default_factory=dict, description="RadiomicsParams fields")

    @model_validator(mode="after")
    def _typed_params(self) -> RadiomicsConfig:
        # Checked while the config loads (like data.options), so a bad value names radiomics.params.<field>.
        from rlar.radiomics.params import RadiomicsParams

        try:
            RadiomicsParams.model_validate(dict(self.params))
        except ValidationError as err:
            raise config_error_from(err, "radiomics.params", model=RadiomicsParams) from None
        return self


class OptimConfig(_Section):
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    epochs: int = Field(default=500, ge=1)
    batch_size: int = Field(default=8, ge=1)
    warmup_epochs: float = Field(default=5, ge=0, description="linear warm-up length before the cosine decay")
    grad_clip: float | None = Field(default=1.0, gt=0, description="max global gradient norm; null disables clipping")
    amp: bool = Field(default=True, description="bf16 autocast on CUDA (ignored on CPU/MPS)")
    cpu_amp: bool = Field(default=False, description="bf16 autocast on a CPU with native bf16 (AVX512-BF16 or AMX; "
                          "fp32 with a warning elsewhere). Off by default: see docs/recipes.md, CPU autocast")


class DivergenceConfig(_Section):
    """The divergence guard on the loss trend (issue 11): NaN/inf is always fatal; this also catches a finite blow-up.

    The trainer keeps the mean total loss of the last ``window`` steps and its lowest value so far; when the
    current window mean exceeds ``factor`` times that lowest value (and ``min_loss``), the run stops with a
    message and the last good checkpoint is kept. A healthy run moves its loss by far less than 1000x. A blow-up
    inside the first window (issue 23) is caught by a second rule: every step of the last window above ``factor``
    times the first ``window`` steps' scale (their lowest loss, at least ``min_loss``); ``max_loss`` optionally
    stops at one absurd step (:class:`rlar.training.trainer.DivergenceGuard`).
    """

    enabled: bool = True
    factor: float = Field(default=1000.0, gt=1.0, description="stop when the window mean exceeds factor x its lowest value")
    window: int = Field(default=10, ge=1, description="steps averaged before comparing")
    min_loss: float = Field(default=1.0, gt=0.0, description="never stop while the window mean is below this value")
    max_loss: float | None = Field(
        default=None, gt=0.0, description="stop at once when one step's total loss exceeds this in absolute value; "
        "null (default): off, since one batch can legitimately be far above the others (a nearly constant radiomics "
        "feature on a tiny training fold gave L_rad 4.5e6)")


class TrainingConfig(_Section):
    device: Device = DEFAULT_DEVICE
    seed: int = 0
    deterministic: bool = True
    selection: Literal["best_val", "last"] = Field(
        default="best_val",
        description="best_val: the checkpoint with the best inner-validation score is tested; last: the last epoch "
                    "(no selection; validation then only drives early stopping if patience is set)",
    )
    early_stopping_patience: int | None = Field(default=None, ge=1, description="validations without improvement; null: off")
    val_every: int = Field(default=1, ge=1, description="epochs between validations")
    checkpoint_every: int = Field(default=1, ge=1, description="epochs between 'last' checkpoints")
    log_every: int = Field(default=10, ge=1, description="steps between TensorBoard step scalars")
    cpu_threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads (null: torch's default); 1 is often fastest on a shared CPU"
    )
    divergence: DivergenceConfig = Field(default_factory=DivergenceConfig)
    competition_probe: int = Field(
        default=32, ge=0, description="training images (labelled for both tasks, un-augmented) on which a two-task "
        "model's per-layer gradient alignment is measured before training and at each validation "
        "(competition.csv; rlar.training.competition); 0: off")


class RlarConfig(_Section):
    """A full training run. ``resolve`` semantics: preset-derived fields are filled after validation."""

    method: str = Field(default="rlar", description="method preset (rlar.training.presets.PRESETS)")
    size: str | None = Field(default=None, description="which entry of the file's 'sizes' was applied (provenance)")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    radiomics: RadiomicsConfig = Field(default_factory=RadiomicsConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    prediction: PredictionOptions = Field(
        default_factory=PredictionOptions,
        description="how outputs become the reported prediction (flip TTA, mask clean-up) in validation, test and inference",
    )
    output: str = Field(default="runs/rlar", description="default output folder of `rlar train`")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown method '{value}'; choose one of: {', '.join(METHOD_NAMES)}")
        return value

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
        arch = model.arch or preset.arch
        # Which tasks the architecture trains, and the optional ones (ACR descriptors) it has a head for: rlar.tasks.
        extra_key = f"model.options.{EXTRA_TASKS_OPTION}"
        try:
            extra = extra_tasks_of(model.options)
            trained = trained_tasks(arch, bool(rad.enabled), extra)
        except ValueError as exc:
            raise ConfigError(extra_key, str(exc)) from None
        weights = loss.weights
        for name in TASK_NAMES:
            if getattr(weights, name) is None:
                object.__setattr__(weights, name, 1.0 if name in trained else 0.0)
            elif TASKS[name].optional and getattr(weights, name) and name not in extra:
                raise ConfigError(f"loss.weights.{name}", f"> 0 needs '{name}' in {extra_key} (no head without it)")
        if getattr(weights, RAD.name, 0) and not rad.enabled:
            raise ConfigError(f"loss.weights.{RAD.name}", "> 0 needs radiomics.enabled: true (there would be no targets)")
        if rad.enabled and arch != "multitask":
            raise ConfigError("radiomics.enabled", f"guidance needs the multitask architecture, not '{arch}'")
        if strategy.tasks is None:
            # Every loss key the model produces belongs to a task group (a key outside every group would become a
            # group of its own in the strategy); the guidance loss is in the classification group as in the paper.
            object.__setattr__(strategy, "tasks", default_grouping(trained))
        if not any(getattr(weights, name) for name in TASK_NAMES):
            raise ConfigError("loss.weights", "every loss weight is 0; nothing to train")
        _validate_strategy(strategy)
        _validate_backbone(model)
        return self

    @property
    def task_names(self) -> list[str]:
        return list(self.strategy.tasks or {})


def _validate_strategy(strategy: StrategyConfig) -> None:
    """The strategy name and every ``strategy.options`` entry, by the strategies' own registry."""
    choices = strategy_choices()
    if strategy.name not in choices:
        raise ConfigError("strategy.name", f"unknown strategy '{strategy.name}' (choose from {', '.join(choices)})")
    unknown = sorted(set(strategy.options) - set(choices))
    if unknown:
        raise ConfigError(f"strategy.options.{unknown[0]}", f"not a strategy name (strategies: {', '.join(choices)})")
    from rlar.strategies import validate_strategy_options

    for name, raw in strategy.options.items():
        if not isinstance(raw, dict):
            raise ConfigError(f"strategy.options.{name}", f"must be a mapping of options, got {raw!r}")
        validate_strategy_options(name, raw)


def _validate_backbone(model: ModelConfig) -> None:
    """``model.options`` by the backbone's own typed options (``rlar.models.BACKBONES``)."""
    if model.backbone is None:
        return
    from rlar.models import validate_backbone_options

    validate_backbone_options(model.backbone, dict(model.options))


# ----------------------------------------------------------------------------------------------------------------
# Loading and saving


def validate_config(raw: dict[str, Any]) -> RlarConfig:
    """Validate a plain dict (already merged) into an :class:`RlarConfig`; errors become ConfigError."""
    try:
        return RlarConfig.model_validate(raw)
    except ValidationError as err:
        raise config_error_from(err, model=RlarConfig) from None


def parse_value(text: str) -> Any:
    """A ``key=value`` value as the user means it: YAML scalar semantics (``3`` int, ``[1, 2]`` list, ``null``,
    ``true``), plus ``1e-4`` as a float (YAML 1.1 reads it as a string because it lacks a dot).

    The one value parser of rlar: ``--set`` here and the CLI's ``--option`` both use it. Raises ValueError with
    the reason for text that is not valid YAML.
    """
    if not text.strip():
        return None
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"value {text!r} is not valid YAML ({exc})") from None
    if isinstance(parsed, str) and parsed.lower() not in ("nan", "inf", "-inf", "infinity", "+inf"):
        with contextlib.suppress(ValueError):
            return float(parsed)
    return parsed


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
        parsed = parse_value(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
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
    if size is None and sizes:
        size = raw.get("size")
    # A resolved config.yaml (dump_config) keeps `size` as provenance without the `sizes` it came from: its values
    # already include that size, so it reloads as it is.
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
