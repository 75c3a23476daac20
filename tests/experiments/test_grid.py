"""Grid files: validation with errors naming the key, expansion into arms/tables/runs, presets, shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlar.errors import ConfigError
from rlar.experiments.grid import expand, load_grid, parse_shard, shipped_grid_names, take_shard, validate_grid
from rlar.radiomics import FEATURE_FAMILIES


def test_expand_methods_and_ablations_share_the_reference_arm(tiny_grid: Path) -> None:
    raw = yaml.safe_load(tiny_grid.read_text())
    raw["methods"] = ["vanilla_mtl", "guided_mtl", "rlar"]
    raw["ablations"] = {"rlar_layer": {"mid_layer": "enc2"}, "lambda_sweep": {"values": [0.3, 3.0]},
                        "loo_family": {}, "guidance": None}
    grid = expand(validate_grid(raw))
    names = [a.name for a in grid.arms]
    assert names[:3] == ["vanilla_mtl", "guided_mtl", "rlar"]
    assert names.count("rlar") == 1  # every ablation compares with the main table's rlar run: trained once
    assert {"rlar_layer-mid", "rlar_layer-both", "lambda_sweep-0.3", "lambda_sweep-3"} <= set(names)
    assert {f"loo_family-{f}" for f in FEATURE_FAMILIES} <= set(names)
    tables = {t.name: t for t in grid.tables}
    assert tables["main"].comparisons == (("guided_mtl", "vanilla_mtl"), ("rlar", "vanilla_mtl"),
                                          ("rlar", "guided_mtl"))
    assert tables["rlar_layer"].arms == ("rlar", "rlar_layer-mid", "rlar_layer-both")
    assert ("rlar", "guidance-rlar_unguided") in tables["guidance"].comparisons
    mid = next(a for a in grid.arms if a.name == "rlar_layer-mid")
    assert mid.overrides == ("strategy.options.rlar.layers=[enc2]",)
    sweep = next(a for a in grid.arms if a.name == "lambda_sweep-3")
    assert sweep.overrides == ("strategy.options.rlar.lambda_rlar=3.0",)
    assert len(grid.runs()) == len(names) * 2 * 2  # arms x seeds x folds
    assert grid.runs()[0].rel_dir == Path("vanilla_mtl/seed0/fold0")


def test_annotator_preset_levels_and_truth_flag(tiny_grid: Path) -> None:
    raw = yaml.safe_load(tiny_grid.read_text())
    raw["methods"] = []
    raw["ablations"] = {"annotator": {"methods": ["vanilla_mtl", "rlar"], "levels": ["L0-truth", "L4-severe"]}}
    grid = expand(validate_grid(raw))
    assert [a.name for a in grid.arms] == ["annot-L0-truth-vanilla_mtl", "annot-L0-truth-rlar",
                                           "annot-L4-severe-vanilla_mtl", "annot-L4-severe-rlar"]
    assert all(a.evaluate_truth for a in grid.arms)
    noisy = grid.arms[3]
    assert "data.options.mask_from=random_reader" in noisy.overrides and noisy.meta["level_index"] == 1
    assert [t.comparisons for t in grid.tables] == [(("annot-L0-truth-rlar", "annot-L0-truth-vanilla_mtl"),),
                                                    (("annot-L4-severe-rlar", "annot-L4-severe-vanilla_mtl"),)]
    raw["ablations"]["annotator"]["methods"] = ["vanilla_mtl", "guided_mtl", "rlar"]
    table = expand(validate_grid(raw)).tables[1]  # with guidance: RLAR's own effect is compared too
    assert table.comparisons == (("annot-L4-severe-guided_mtl", "annot-L4-severe-vanilla_mtl"),
                                 ("annot-L4-severe-rlar", "annot-L4-severe-vanilla_mtl"),
                                 ("annot-L4-severe-rlar", "annot-L4-severe-guided_mtl"))


@pytest.mark.parametrize(("change", "key"), [
    ({"methods": ["vanila_mtl"]}, "methods"),
    ({"ablations": {"lambda_swep": {}}}, "ablations.lambda_swep"),
    ({"ablations": {"lambda_sweep": {"values": []}}}, "ablations.lambda_sweep.values"),
    ({"ablations": {"loo_feature": {"features": ["nope"]}}}, "ablations.loo_feature.features"),
    ({"ablations": {"annotator": {"levels": ["L9"]}}}, "levels"),
    ({"seedz": [0]}, "seedz"),
])
def test_grid_errors_name_the_key(tiny_grid: Path, change: dict, key: str) -> None:
    raw = {**yaml.safe_load(tiny_grid.read_text()), **change}
    with pytest.raises(ConfigError) as err:
        expand(validate_grid(raw))
    assert err.value.key == key


def test_subsets_and_fold_range(tiny_grid: Path) -> None:
    grid = load_grid(tiny_grid)
    sub = expand(grid, methods=["rlar"], folds=[1], seeds=[1])
    assert [str(r.rel_dir) for r in sub.runs()] == ["rlar/seed1/fold1"]
    with pytest.raises(ConfigError, match="not folds of this grid"):
        expand(grid, folds=[5])
    with pytest.raises(ConfigError) as err:
        expand(validate_grid({**yaml.safe_load(tiny_grid.read_text()), "folds": [0, 3]}))
    assert err.value.key == "folds"


def test_shards_partition_the_grid(tiny_grid: Path) -> None:
    runs = expand(load_grid(tiny_grid)).runs()
    shards = [take_shard(runs, (i, 3)) for i in range(3)]
    flat = [r for s in shards for r in s]
    assert sorted(map(str, (r.rel_dir for r in flat))) == sorted(map(str, (r.rel_dir for r in runs)))
    assert len(flat) == len(set(flat))  # disjoint
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for bad in ("3/3", "a/b", "1", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_shipped_grids_are_valid() -> None:
    names = shipped_grid_names()
    assert {"phantom_smoke", "ddti", "ddti_ablations", "phantom_annotators"} <= set(names)
    for name in names:
        grid = expand(load_grid(name))
        assert grid.runs(), name


def test_space_ablation_reads_the_values_from_the_strategy() -> None:
    from rlar.experiments.presets import expand_preset, rlar_spaces
    from rlar.strategies import STRATEGIES
    from rlar.strategies.rlar import RLAROptions

    values = rlar_spaces()
    options = STRATEGIES["rlar"].Options
    assert issubclass(options, RLAROptions)
    assert values and all(options.model_validate({"space": v}).space == v for v in values)
    default = options.model_validate({}).space
    others = rlar_spaces(include_default=False)
    assert others == [v for v in values if v != default] and default in values
    arms, (table,) = expand_preset("rlar_space", {})  # the default space is the reference arm rlar itself
    assert [a.name for a in arms] == [f"rlar_space-{v}" for v in others] + ["rlar"]
    assert table.comparisons == tuple((f"rlar_space-{v}", "rlar") for v in others)
    arms, _ = expand_preset("rlar_space", {"values": [default]})  # asked for explicitly: kept
    assert arms[0].name == f"rlar_space-{default}"
