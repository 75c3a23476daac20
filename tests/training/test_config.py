"""Config loading: errors name the bad key; presets, sizes and overrides resolve as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlar.errors import ConfigError
from rlar.training.config import (
    METHOD_NAMES,
    PRESETS,
    dump_config,
    find_config,
    load_config,
    parse_override,
    parse_value,
    shipped_config_names,
)


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_in_file_names_full_dotted_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {"optim": {"lr": 1e-3, "learning_rate": 2}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "optim.learning_rate"
    assert "unknown key" in str(info.value)


def test_unknown_key_in_override_and_unknown_section() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["training.seeed=3"])
    assert info.value.key == "training.seeed"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["trainer.seed=3"])
    assert info.value.key == "trainer"


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["optim.batch_size=eight"])
    assert info.value.key == "optim.batch_size"
    assert "eight" in info.value.reason


def test_bad_method_name_lists_choices() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["method=rlarr"])
    assert info.value.key == "method"
    assert "guided_mtl" in info.value.reason and "rlarr" in info.value.reason


@pytest.mark.parametrize("item", ["optim.lr", "=3", "optim..lr=3"])
def test_bad_set_syntax(item: str) -> None:
    with pytest.raises(ConfigError):
        parse_override(item)


def test_override_values_are_yaml() -> None:
    assert parse_override("optim.lr=3e-4") == (["optim", "lr"], 3e-4)
    assert parse_override("data.image_size=[64, 96]")[1] == [64, 96]
    assert parse_override("optim.grad_clip=null")[1] is None
    cfg = load_config(None, ["data.image_size=64", "optim.grad_clip=null", "loss.class_weights=[1, 2, 3]"])
    assert cfg.data.image_size == (64, 64) and cfg.optim.grad_clip is None
    assert cfg.loss.class_weights == [1.0, 2.0, 3.0]


def test_cross_field_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.n_folds=3", "data.fold=3"])
    assert info.value.key == "data.fold"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["method=vanilla_mtl", "loss.weights.rad=0.5"])
    assert info.value.key == "loss.weights.rad"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["strategy.options.pcgradd={}"])
    assert info.value.key == "strategy.options.pcgradd"


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_presets_fill_unset_fields(method: str) -> None:
    cfg = load_config(None, [f"method={method}"])
    preset = PRESETS[method]
    assert (cfg.model.arch, cfg.model.backbone, cfg.strategy.name) == (preset.arch, preset.backbone, preset.strategy)
    assert cfg.radiomics.enabled == preset.guided
    assert (cfg.loss.weights.model_dump()["rad"] > 0) == preset.guided
    tasks = cfg.strategy.tasks
    assert tasks is not None and ("seg" in tasks) == (preset.arch != "classification")


def test_user_values_win_over_preset() -> None:
    cfg = load_config(None, ["method=rlar", "model.backbone=resnet18", "loss.weights.rad=0.3", "strategy.name=pcgrad"])
    assert cfg.model.backbone == "resnet18" and cfg.loss.weights.model_dump()["rad"] == 0.3 and cfg.strategy.name == "pcgrad"
    # guidance can be switched on for a method whose preset has it off
    cfg = load_config(None, ["method=pcgrad", "radiomics.enabled=true"])
    tasks = cfg.strategy.tasks
    assert cfg.loss.weights.model_dump()["rad"] == 1.0 and tasks is not None and tasks["cls"] == ["cls", "rad"]


def test_sizes_select_and_overrides_apply_last(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", {
        "size": "small",
        "optim": {"epochs": 100, "lr": 1e-4},
        "sizes": {"small": {"optim": {"epochs": 2}}, "big": {"optim": {"epochs": 500, "lr": 5e-4}}},
    })
    assert load_config(path).optim.epochs == 2
    cfg = load_config(path, ["optim.lr=1e-2"], size="big")
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.size) == (500, 1e-2, "big")
    assert load_config(path, ["size=big"]).optim.epochs == 500
    with pytest.raises(ConfigError) as info:
        load_config(path, size="huge")
    assert info.value.key == "size" and "small" in info.value.reason


def test_dump_roundtrip(tmp_path: Path) -> None:
    cfg = load_config(None, ["method=guided_mtl", "optim.lr=2e-3", "strategy.options.rlar={tau: 0.2}"])
    dump_config(cfg, tmp_path / "out.yaml")
    again = load_config(tmp_path / "out.yaml")
    assert again == cfg


@pytest.mark.parametrize("name", ["phantom", "ddti", "thyroidxl", "aimi"])
def test_shipped_configs_load_in_both_sizes(name: str) -> None:
    assert name in shipped_config_names()
    path, _ = find_config(name)
    paper = load_config(path, size="paper")
    assert (paper.optim.lr, paper.optim.batch_size, paper.optim.epochs) == (1e-4, 8, 500)
    cpu = load_config(*find_config(f"{name}:cpu")[:1], size=find_config(f"{name}:cpu")[1])
    assert cpu.size == "cpu" and cpu.training.device == "cpu"
    # The strategy's defaults live in its Options model only: the shipped files set none of them.
    assert cpu.method == "rlar" and cpu.strategy.selected_options == {}


def test_find_config_unknown_name() -> None:
    with pytest.raises(ConfigError) as info:
        find_config("no-such-config")
    assert "phantom" in info.value.reason


def test_leave_one_feature_out_masks_the_guidance_loss() -> None:
    from rlar.losses import MultitaskLoss
    from rlar.losses.guidance import RadiomicsGuidanceLoss
    from rlar.radiomics import FEATURE_NAMES
    from rlar.training.run import build_components, rad_feature_mask

    assert rad_feature_mask(load_config(None, [])) is None
    cfg = load_config(None, ["method=guided_mtl", "radiomics.exclude_feature=taller_than_wide"])
    mask = rad_feature_mask(cfg)
    assert mask is not None and sum(mask) == 12 and not mask[FEATURE_NAMES.index("taller_than_wide")]
    _, _, loss_fn = build_components(cfg, num_classes=5, class_weights=None)
    assert isinstance(loss_fn, MultitaskLoss)
    rad_loss = loss_fn.rad_loss
    assert isinstance(rad_loss, RadiomicsGuidanceLoss) and rad_loss.feature_mask is not None
    assert rad_loss.feature_mask.tolist() == mask
    family = rad_feature_mask(load_config(None, ["radiomics.exclude_feature=shape_margin"]))
    assert family is not None and sum(family) == 13 - 6
    with pytest.raises(ConfigError, match="radiomics.exclude_feature"):
        rad_feature_mask(load_config(None, ["radiomics.exclude_feature=not_a_feature"]))


def test_misspelt_set_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["optim.epocs=3"])
    assert info.value.key == "optim.epocs" and "did you mean 'optim.epochs'?" in info.value.reason
    with pytest.raises(ConfigError) as info:
        load_config(None, ["trainin.seed=3"])
    assert "did you mean 'training'?" in info.value.reason
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.zzzz=3"])
    assert "(accepted: " in info.value.reason and "val_fraction" in info.value.reason


def test_parse_value_reads_yaml_scalars_and_exponent_floats() -> None:
    assert parse_value("1e-4") == 1e-4 and isinstance(parse_value("1e-4"), float)
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("[1, 2]") == [1, 2] and parse_value("null") is None and parse_value("true") is True
    assert parse_value("abc") == "abc" and parse_value("nan") == "nan"
    with pytest.raises(ValueError, match="not valid YAML"):
        parse_value("[1, 2")


def test_strategy_options_are_validated_while_the_config_loads() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["strategy.options.rlar={tau: not-a-number}"])
    assert info.value.key == "strategy.options.rlar.tau"
    # every entry is checked, not only the strategy in use
    with pytest.raises(ConfigError) as info:
        load_config(None, ["method=vanilla_mtl", "strategy.options.cagrad={c: oops}"])
    assert info.value.key == "strategy.options.cagrad.c"


def test_backbone_options_are_validated_while_the_config_loads() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.options={compact_channelz: [4, 8, 8, 8]}"])
    assert info.value.key == "model.options.compact_channelz"


def test_strategy_choices_come_from_the_strategies_registry() -> None:
    from rlar.strategies import STRATEGIES
    from rlar.training import config

    assert config.strategy_choices() == tuple(STRATEGIES)


def test_loss_weights_follow_the_task_table() -> None:
    from rlar.tasks import TASK_NAMES
    from rlar.training.config import LossWeights, loss_weights

    assert tuple(LossWeights.model_fields) == TASK_NAMES
    assert loss_weights(load_config(None, ["method=cls_only"])) == {"seg": 0.0, "cls": 1.0, "rad": 0.0}
    assert loss_weights(load_config(None, ["method=rlar"])) == {"seg": 1.0, "cls": 1.0, "rad": 1.0}


def test_cls_only_uses_the_multitask_encoder() -> None:
    cfg = load_config(None, ["method=cls_only"])
    mtl = load_config(None, ["method=vanilla_mtl"])
    assert cfg.model.arch == "classification" and cfg.model.backbone == mtl.model.backbone == "compact"
    assert cfg.strategy.tasks == {"cls": ["cls"]}


def test_presets_table_lists_every_method_and_the_docs_show_it() -> None:
    from rlar.training.presets import presets_table

    table = presets_table()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for name in METHOD_NAMES:
        assert f"| `{name}` |" in table
        assert f"| `{name}` |" in docs, f"docs/protocol.md lacks the row of method '{name}'"


def test_divergence_and_selection_options() -> None:
    cfg = load_config(None, [])
    assert cfg.training.selection == "best_val" and cfg.training.divergence.enabled
    cfg = load_config(None, ["training.selection=last", "training.divergence.factor=50"])
    assert cfg.training.selection == "last" and cfg.training.divergence.factor == 50
    with pytest.raises(ConfigError) as info:
        load_config(None, ["training.selection=best"])
    assert info.value.key == "training.selection"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.val_fraction=0.9"])
    assert info.value.key == "data.val_fraction"


def test_a_resolved_config_with_its_size_reloads_unchanged(tmp_path: Path) -> None:
    path, size = find_config("phantom:cpu")
    cfg = load_config(path, size=size)
    dump_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")  # `size: cpu` is provenance here; there is no `sizes` section
    assert again == cfg and again.size == "cpu"
    with pytest.raises(ConfigError, match="unknown size 'paper'"):
        load_config(tmp_path / "config.yaml", size="paper")  # asking for a size the file lacks is still an error


def test_radiomics_params_are_validated_while_the_config_loads() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["radiomics.params={ring_widht: 3}"])
    assert info.value.key == "radiomics.params.ring_widht" and "did you mean 'ring_width'" in info.value.reason
    with pytest.raises(ConfigError) as info:
        load_config(None, ["radiomics.params={bin_count: 0}"])
    assert info.value.key == "radiomics.params.bin_count"
    assert load_config(None, ["radiomics.params={ring_width: 5}"]).radiomics.params == {"ring_width": 5}
