"""Tasks as rows (rlar.tasks): a new task is one TaskSpec row, and the loss, the model head, the batch, the config
weight, the strategy grouping, the metrics and the printed summary all follow it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from rlar.data.record import DESCRIPTOR_VALUES, DESCRIPTORS
from rlar.errors import ConfigError
from rlar.models.options import NetworkOptions
from rlar.tasks import (
    CLS,
    EXTRA_TASKS_OPTION,
    RAD,
    SEG,
    TASKS,
    check_extra_tasks,
    default_grouping,
    optional_task_names,
    selection_headlines,
    trained_tasks,
)
from rlar.training.config import load_config, loss_weights

ACR = ["composition", "echogenicity", "margin", "echogenic_foci"]

# Run in a fresh interpreter: the row is added before anything imports the table, exactly as if it were written
# in src/rlar/tasks.py, and nothing else changes. A tiny phantom (it records the ACR shape descriptor) trains 1 epoch.
TOY_SCRIPT = textwrap.dedent("""
    import json, sys
    import rlar.tasks as tasks
    tasks.add_task(tasks.aux_classification_task("toy_shape", ("wider_than_tall", "taller_than_wide"),
                                                 "toy: the ACR shape descriptor", descriptor="shape"))
    from rlar.training.config import find_config, load_config
    from rlar.training.run import run_training
    sets = ["method=guided_mtl", "data.options={n_cases: 24, image_size: [32, 32]}", "data.image_size=32",
            "data.n_folds=2", "model.deep_dim=4", "model.options={compact_channels: [4, 8, 8, 8], "
            "extra_tasks: [toy_shape]}", "optim.epochs=1", "optim.batch_size=8", "optim.warmup_epochs=0",
            "training.device=cpu", "training.cpu_threads=1", "training.deterministic=false",
            "training.competition_probe=0", "data.cache_dir=" + sys.argv[2]]
    metrics = run_training(load_config(find_config("phantom")[0], sets), sys.argv[1], progress=False)
    print(json.dumps({k: v for k, v in metrics["test"].items() if k.startswith("toy_shape")}))
""")


def test_a_toy_task_is_one_row_and_trains(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", TOY_SCRIPT, str(out), str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(scores) == {"toy_shape_macro_f1", "toy_shape_auroc", "toy_shape_n"}
    assert scores["toy_shape_n"] > 0 and 0.0 <= scores["toy_shape_macro_f1"] <= 1.0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["loss"]["weights"]["toy_shape"] == 1.0  # the config's weight key came from the row
    assert "toy_shape" in config["strategy"]["tasks"]["cls"]  # grouped with the TI-RADS task, as the row says
    log = pd.read_csv(out / "log.csv")
    assert "loss_toy_shape" in log.columns and log["loss_toy_shape"].notna().all()
    table = pd.read_csv(out / "predictions_test.csv")
    assert {"toy_shape_label", "toy_shape_pred", "toy_shape_prob_taller_than_wide"} <= set(table.columns)
    weights = torch.load(out / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)["model"]
    assert weights["classifier.task_heads.toy_shape.1.weight"].shape[0] == 2


def test_descriptor_rows_follow_the_descriptor_vocabulary() -> None:
    assert optional_task_names() == DESCRIPTORS
    for name in DESCRIPTORS:
        spec = TASKS[name]
        assert spec.classes == DESCRIPTOR_VALUES[name] and spec.descriptor == name and spec.group == CLS.group
        assert spec.optional and not spec.selects and spec.target_keys == (name,)
    # the descriptors never enter the checkpoint choice or the tested comparisons
    assert selection_headlines() == (SEG.headline, CLS.headline)


def test_validity_rules_are_data() -> None:
    batch = {"has_mask": torch.tensor([True, False, True]), "label": torch.tensor([2, -1, 0]),
             "has_radiomics": torch.tensor([True, True, False]), "composition": torch.tensor([-1, 5, 0])}
    assert SEG.valid(batch).tolist() == [True, False, True]
    assert CLS.valid(batch).tolist() == [True, False, True]
    assert RAD.valid(batch).tolist() == [True, False, False]  # radiomics need a mask too
    assert TASKS["composition"].valid(batch).tolist() == [False, True, True]


def test_which_tasks_an_architecture_trains_is_read_from_the_rows() -> None:
    assert trained_tasks("multitask", guided=True) == (SEG.name, CLS.name, RAD.name)
    assert trained_tasks("multitask", guided=False) == (SEG.name, CLS.name)
    assert trained_tasks("segmentation", guided=True) == (SEG.name,)  # guidance needs the embedding
    assert trained_tasks("classification", guided=False, extra=["margin"]) == (CLS.name, "margin")
    with pytest.raises(ValueError, match="not arch 'segmentation'"):
        trained_tasks("segmentation", guided=False, extra=["margin"])


def test_the_network_option_is_the_key_the_table_names() -> None:
    assert EXTRA_TASKS_OPTION in NetworkOptions.model_fields
    assert check_extra_tasks(["margin", "composition"]) == ("composition", "margin")  # table order
    with pytest.raises(ValueError, match=r"unknown optional task\(s\) \['colour'\]; choose from"):
        check_extra_tasks(["colour"])
    with pytest.raises(ValueError, match="listed twice"):
        check_extra_tasks(["margin", "margin"])
    with pytest.raises(ValueError, match="unknown optional task"):
        check_extra_tasks(["cls"])  # a main task is not an option


def test_descriptor_tasks_are_off_by_default_and_one_option_turns_them_on() -> None:
    plain = load_config(None, ["method=guided_mtl"])
    assert loss_weights(plain) == {SEG.name: 1.0, CLS.name: 1.0, RAD.name: 1.0}
    assert plain.strategy.tasks == default_grouping([SEG.name, CLS.name, RAD.name])
    on = load_config(None, ["method=guided_mtl", f"model.options={{{EXTRA_TASKS_OPTION}: [{', '.join(ACR)}]}}"])
    assert loss_weights(on) == {SEG.name: 1.0, CLS.name: 1.0, RAD.name: 1.0} | dict.fromkeys(ACR, 1.0)
    assert on.strategy.tasks is not None and on.strategy.tasks[CLS.group] == [CLS.name, RAD.name, *ACR]
    assert on.loss.weights.model_dump()["shape"] == 0.0  # a descriptor not asked for stays off


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=rf"model\.options\.{EXTRA_TASKS_OPTION}.*colour"):
        load_config(None, ["method=guided_mtl", f"model.options={{{EXTRA_TASKS_OPTION}: [colour]}}"])
    with pytest.raises(ConfigError, match=r"loss\.weights\.margin.*needs 'margin' in model\.options\.extra_tasks"):
        load_config(None, ["method=guided_mtl", "loss.weights.margin=1"])
    with pytest.raises(ConfigError, match=rf"model\.options\.{EXTRA_TASKS_OPTION}.*segmentation"):
        load_config(None, ["method=seg_only", f"model.options={{{EXTRA_TASKS_OPTION}: [margin]}}"])
