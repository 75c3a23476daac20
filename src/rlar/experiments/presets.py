"""Named ablation presets: each turns a few typed options into arms and one or more report tables.

A grid file lists them under ``ablations:`` with their options, e.g.::

    ablations:
      rlar_layer: {mid_layer: enc3}
      lambda_sweep: {values: [0.03, 0.3, 3.0]}
      loo_feature: {}

Every preset compares against the plain ``rlar`` arm (the shipped defaults), which the main table trains anyway,
so that run is shared. Adding a preset = one options model, one builder function and one line in :data:`PRESETS`.
Strategy option names follow the strategy's own ``Options`` model (``lambda_rlar``, ``tau``, ``layers``,
``space``); config keys are those of :mod:`rlar.training.config`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlar.errors import ConfigError, config_error_from
from rlar.experiments.arms import Arm, TableSpec, reference_comparisons
from rlar.experiments.readers import READER_LEVELS, reader_level

#: The reference arm every RLAR ablation is compared with: the method at its shipped defaults.
RLAR = Arm("rlar", "rlar")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _fmt(value: float) -> str:
    """A sweep value as a folder-name-safe label: 0.1 -> '0.1', -0.2 -> 'm0.2', 1e-05 -> '1e-05'."""
    text = f"{value:g}"
    return text.replace("-", "m", 1) if text.startswith("-") else text


class LayerOptions(_Options):
    mid_layer: str = Field("enc3", description="the mid-level representation (a name of model.representation_names)")


def _layer(o: LayerOptions) -> list[TableSpec | Arm]:
    key = "strategy.options.rlar.layers"
    arms = [Arm("rlar_layer-mid", "rlar", (f"{key}=[{o.mid_layer}]",), meta={"layers": [o.mid_layer]}),
            Arm("rlar_layer-both", "rlar", (f"{key}=[{o.mid_layer}, bottleneck]",),
                meta={"layers": [o.mid_layer, "bottleneck"]})]
    return [*arms, _table("rlar_layer", "RLAR layer: bottleneck (rlar) vs mid-level vs both", arms)]


class SpaceOptions(_Options):
    values: list[str] | None = Field(None, description="direction spaces; default: every value the rlar strategy "
                                                         "offers except its default, which the reference arm rlar runs")


def rlar_spaces(include_default: bool = True) -> list[str]:
    """The values of the rlar strategy's ``space`` option, read from its Options model (the one place they live);
    without its default value when ``include_default`` is False."""
    try:
        from rlar.strategies import STRATEGIES

        field = STRATEGIES["rlar"].Options.model_fields["space"]
    except (ImportError, KeyError, AttributeError):
        raise ConfigError("ablations.rlar_space.values",
                          "this rlar strategy declares no 'space' option; list the values explicitly") from None
    values = [str(v) for v in get_args(field.annotation)]
    if not values:
        raise ConfigError("ablations.rlar_space.values", "the space option is not a Literal; list the values")
    return values if include_default else [v for v in values if v != str(field.default)]


def _space(o: SpaceOptions) -> list[TableSpec | Arm]:
    # the default space is the reference arm itself: a second arm with it would train the same run twice
    values = o.values if o.values is not None else rlar_spaces(include_default=False)
    arms = [Arm(f"rlar_space-{v}", "rlar", (f"strategy.options.rlar.space={v}",), meta={"space": v}) for v in values]
    return [*arms, _table("rlar_space", "RLAR direction space", arms)]


class FeatureOptions(_Options):
    features: list[str] | None = Field(None, description="features to leave out one at a time; default: all 13")
    method: str = Field("rlar", description="the guided method whose guidance loses the feature")

    @field_validator("features")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        from rlar.radiomics import FEATURE_NAMES

        for name in value or []:
            if name not in FEATURE_NAMES:
                raise ValueError(f"'{name}' is not a radiomics feature ({', '.join(FEATURE_NAMES)})")
        return value


def _leave_out(prefix: str, names: list[str], method: str, title: str) -> list[TableSpec | Arm]:
    arms = [Arm(f"{prefix}-{n}", method, (f"radiomics.exclude_feature={n}",), meta={"excluded": n}) for n in names]
    return [*arms, _table(prefix, title, arms, reference=Arm(method, method))]


def _loo_feature(o: FeatureOptions) -> list[TableSpec | Arm]:
    from rlar.radiomics import FEATURE_NAMES

    names = o.features if o.features is not None else list(FEATURE_NAMES)
    return _leave_out("loo_feature", names, o.method, f"Leave one radiomics feature out of the guidance ({o.method})")


class FamilyOptions(_Options):
    method: str = Field("rlar", description="the guided method whose guidance loses the family")


def _loo_family(o: FamilyOptions) -> list[TableSpec | Arm]:
    from rlar.radiomics import FEATURE_FAMILIES

    return _leave_out("loo_family", sorted(FEATURE_FAMILIES), o.method,
                      f"Leave one radiomics feature family out of the guidance ({o.method})")


class SweepOptions(_Options):
    values: list[float] = Field(min_length=1)


def _sweep(name: str, option: str, title: str) -> Callable[[SweepOptions], list[TableSpec | Arm]]:
    def build(o: SweepOptions) -> list[TableSpec | Arm]:
        arms = [Arm(f"{name}-{_fmt(v)}", "rlar", (f"strategy.options.rlar.{option}={v!r}",), meta={option: v})
                for v in o.values]
        return [*arms, _table(name, title, arms)]

    return build


class GuidanceOptions(_Options):
    pass


def _guidance(o: GuidanceOptions) -> list[TableSpec | Arm]:
    vanilla, guided = Arm("vanilla_mtl", "vanilla_mtl"), Arm("guided_mtl", "guided_mtl")
    unguided = Arm("guidance-rlar_unguided", "rlar", ("radiomics.enabled=false",), meta={"guided": False})
    arms = [vanilla, guided, unguided, RLAR]
    return [*arms, TableSpec("guidance", "With and without the clinical (radiomics) guidance",
                             tuple(a.name for a in arms),
                             (("guided_mtl", "vanilla_mtl"), ("rlar", unguided.name)))]


class AnnotatorOptions(_Options):
    methods: list[str] = Field(default_factory=lambda: ["vanilla_mtl", "guided_mtl", "rlar"], min_length=1)
    levels: list[str] = Field(default_factory=lambda: list(READER_LEVELS), min_length=1)
    reference: str = "vanilla_mtl"

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[str]) -> list[str]:
        for name in value:
            reader_level(name)
        return value


def annotator_arm_name(level: str, method: str) -> str:
    return f"annot-{level}-{method}"


def _annotator(o: AnnotatorOptions) -> list[TableSpec | Arm]:
    out: list[TableSpec | Arm] = []
    for index, name in enumerate(o.levels):
        level = reader_level(name)
        arms = [Arm(annotator_arm_name(name, m), m, level.overrides(), evaluate_truth=True,
                    meta={"level": name, "level_index": index, "method": m}) for m in o.methods]
        out.extend(arms)
        pairs = reference_comparisons(o.methods, o.reference, partial(annotator_arm_name, name))
        out.append(TableSpec(f"annotator-{name}", f"Annotator study, level {name}: {level.description}",
                             tuple(a.name for a in arms), pairs))
    return out


def _table(name: str, title: str, arms: list[Arm], reference: Arm = RLAR) -> TableSpec:
    names = (reference.name, *(a.name for a in arms))
    return TableSpec(name, title, names, tuple((a.name, reference.name) for a in arms))


@dataclass(frozen=True)
class Preset:
    """An ablation: typed options and the builder of its arms and tables (``build`` returns both kinds)."""

    name: str
    description: str
    options: type[BaseModel]
    build: Callable[[Any], list[TableSpec | Arm]]


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("rlar_layer", "RLAR at the bottleneck vs a mid-level layer vs both", LayerOptions, _layer),
    Preset("rlar_space", "RLAR direction space (rlar option 'space')", SpaceOptions, _space),
    Preset("loo_feature", "leave-one-feature-out of the 13 radiomics targets", FeatureOptions, _loo_feature),
    Preset("loo_family", "leave-one-family-out (rlar.radiomics.FEATURE_FAMILIES)", FamilyOptions, _loo_family),
    Preset("lambda_sweep", "sweep of the RLAR weight lambda_rlar", SweepOptions,
           _sweep("lambda_sweep", "lambda_rlar", "RLAR weight lambda_rlar")),
    Preset("tau_sweep", "sweep of the RLAR cosine threshold tau", SweepOptions,
           _sweep("tau_sweep", "tau", "RLAR cosine threshold tau")),
    Preset("guidance", "with and without the clinical guidance", GuidanceOptions, _guidance),
    Preset("annotator", "methods trained on simulated readers at increasing disagreement (phantom)",
           AnnotatorOptions, _annotator),
)}


def expand_preset(name: str, raw: dict[str, Any] | None) -> tuple[list[Arm], list[TableSpec]]:
    """The arms (including the reference arms the tables need) and tables of preset ``name`` with options ``raw``.

    Raises ConfigError naming ``ablations.<name>`` or ``ablations.<name>.<option>``.
    """
    if name not in PRESETS:
        raise ConfigError(f"ablations.{name}", f"unknown ablation preset (presets: {', '.join(PRESETS)})")
    preset = PRESETS[name]
    try:
        options = preset.options.model_validate(raw or {})
    except ValidationError as err:
        raise config_error_from(err, f"ablations.{name}", model=preset.options, what=f"preset '{name}'") from None
    built = preset.build(options)
    arms = [x for x in built if isinstance(x, Arm)]
    tables = [x for x in built if isinstance(x, TableSpec)]
    # The references the tables compare with (plain method arms such as 'rlar') are arms of the grid too.
    known = {a.name for a in arms}
    for table in tables:
        for arm_name in table.arms:
            if arm_name not in known:
                arms.append(Arm(arm_name, arm_name))
                known.add(arm_name)
    return arms, tables


__all__ = ["PRESETS", "Preset", "annotator_arm_name", "expand_preset", "rlar_spaces"]
