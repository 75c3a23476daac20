"""End to end: `rlar train` and `rlar evaluate` on a tiny source write every promised file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from rlar.cli.main import main
from rlar.data.splits import load_splits
from rlar.training.checkpoint import load_checkpoint
from rlar.training.config import load_config


def test_train_then_evaluate_cli(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                 capsys: pytest.CaptureFixture) -> None:
    # rlar with radiomics guidance: exercises targets, standardiser and the RLAR strategy
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"method": "rlar", "optim": {"epochs": 2}}))
    sets = [a for o in tiny_overrides if not o.startswith("method=") for a in ("--set", o)]
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), *sets, "--fold", "1", "--out", str(out), "--no-progress"]) == 0

    for name in ("config.yaml", "splits.json", "metrics.json", "log.csv", "checkpoints/best.pt", "checkpoints/last.pt",
                 "curves.png", "predictions_test.csv"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    resolved = load_config(out / "config.yaml")
    assert resolved.data.fold == 1 and resolved.strategy.name == "rlar" and resolved.radiomics.enabled
    folds = load_splits(out / "splits.json")
    assert len(folds) == 2 and not set(folds[1]["train"]) & set(folds[1]["val"])
    assert not (set(folds[1]["train"]) | set(folds[1]["val"])) & set(folds[1]["test"])

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"test", "val", "run"}
    assert metrics["run"]["fold"] == 1 and metrics["run"]["n_val"] == len(folds[1]["val"])
    assert metrics["run"]["n_test"] == len(folds[1]["test"]) and metrics["run"]["selection"] == "best_val"
    assert 0.0 <= metrics["test"]["dice"] <= 1.0 and "macro_f1" in metrics["test"]
    environment = metrics["run"]["environment"]  # where it ran: results of two machines can be told apart
    assert environment["torch"] == torch.__version__ and environment["device"] == "cpu"
    assert environment["host"] and environment["cpu"] and environment["torch_threads"] >= 1
    assert metrics["test"]["n_images"] == len(folds[1]["test"]) and metrics["val"]["n_images"] == len(folds[1]["val"])
    printed = capsys.readouterr().out
    assert f"fold 1 test: dice {metrics['test']['dice']:.4f}" in printed  # the reported numbers are the test side's

    table = pd.read_csv(out / "predictions_test.csv")
    assert sorted(table["image_id"]) == sorted(folds[1]["test"])
    assert list(table.columns[:10]) == ["image_id", "patient_id", "has_mask", "dice", "iou", "hd95_px", "label",
                                        "label_name", "pred", "pred_name"]
    assert {f"prob_TR{k}" for k in range(1, 6)} <= set(table.columns)
    assert table["dice"].mean() == pytest.approx(metrics["test"]["dice"])

    log = pd.read_csv(out / "log.csv")
    assert list(log["epoch"]) == [1, 2]
    for column in ("lr", "loss_seg", "loss_cls", "loss_rad", "total", "cosine", "val_dice", "val_score", "time_s"):
        assert column in log.columns, column
    assert log["cosine"].between(-1, 1).all()  # the cosine between task directions is logged

    ckpt = load_checkpoint(out / "checkpoints" / "best.pt")
    assert ckpt["standardiser"] is not None and len(ckpt["standardiser"]["mean"]) == 13
    assert ckpt["label_space"] == {"scale": "acr", "task": "multiclass"}

    eval_dir = tmp_path / "eval"
    assert main(["evaluate", "--model", str(out / "checkpoints" / "best.pt"), "--splits",
                 str(out / "splits.json"), "--fold", "1", "--out", str(eval_dir), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "dice" in printed
    predictions = pd.read_csv(eval_dir / "predictions.csv")
    # `rlar evaluate --fold` scores one side of the fold (its owner decides which): same checkpoint, same images
    side = "test" if sorted(predictions["image_id"]) == sorted(folds[1]["test"]) else "val"
    assert sorted(predictions["image_id"]) == sorted(folds[1][side])
    assert list(predictions.columns) == list(pd.read_csv(out / "predictions_test.csv").columns)  # one table format
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["dice"] == pytest.approx(metrics[side]["dice"])
    # a multiclass model is also scored low vs high risk (TR1-3 vs TR4-5 here), as rlar report's binary tables do
    from rlar.reporting.collect import read_predictions
    from rlar.reporting.tables import frame_metrics

    binary = frame_metrics(read_predictions(eval_dir / "predictions.csv"), "binary")
    assert evaluated["binary_auroc"] == pytest.approx(binary["auroc"], nan_ok=True)
    assert evaluated["binary_macro_f1"] == pytest.approx(binary["macro_f1"])
    assert "binary_macro_f1" in printed


def test_train_cli_reports_config_errors(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--config", "phantom", "--set", "optim.lrr=1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err


def test_run_training_on_the_phantom_source(tmp_path: Path, tiny_overrides: list[str]) -> None:
    from rlar.training.run import run_training

    cfg = load_config(None, [*tiny_overrides, "data.source=phantom", "data.options={n_cases: 16, image_size: [32, 32]}",
                             "optim.epochs=1"])
    metrics = run_training(cfg, tmp_path, progress=False)
    assert {"dice", "macro_f1"} <= set(metrics["test"]) and "run" in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["run"]["epochs_run"] == 1
    assert (tmp_path / "log.csv").is_file() and (tmp_path / "splits.json").is_file()


def test_train_all_folds_prints_mean_and_std(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                              capsys: pytest.CaptureFixture) -> None:
    sets = [a for o in [*tiny_overrides, "optim.epochs=1", "method=vanilla_mtl"] for a in ("--set", o)]
    out = tmp_path / "cv"
    assert main(["train", "--config", "phantom", *sets, "--fold", "all", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    folds = [json.loads((out / f"fold_{k}" / "metrics.json").read_text()) for k in range(2)]
    summary = json.loads((out / "summary.json").read_text())["test"]
    dice = [f["test"]["dice"] for f in folds]
    assert summary["dice"]["mean"] == pytest.approx(sum(dice) / 2)
    assert summary["dice"]["std"] == pytest.approx(abs(dice[0] - dice[1]) / 2**0.5)  # sample std of two values
    assert "test folds, mean ± std over 2 folds" in printed and f"{summary['dice']['mean']:.3f} ± " in printed


def test_train_method_choices_come_from_the_presets(capsys: pytest.CaptureFixture) -> None:
    from rlar.cli.main import build_parser
    from rlar.training.presets import METHOD_NAMES

    parser = build_parser("train")
    commands = next(a for a in parser._actions if a.dest == "command")
    train = commands.choices["train"]  # type: ignore[index]
    method = next(a for a in train._actions if a.dest == "method")
    assert tuple(method.choices) == METHOD_NAMES
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--config", "phantom", "--method", "rlarr"])
    assert "invalid choice: 'rlarr'" in capsys.readouterr().err


def test_train_method_flag_selects_the_preset(tmp_path: Path, tiny_source: type, tiny_overrides: list[str]) -> None:
    sets = [a for o in [*tiny_overrides[1:], "optim.epochs=1"] for a in ("--set", o)]
    out = tmp_path / "cls"
    assert main(["train", "--config", "phantom", "--method", "cls_only", *sets, "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["method"] == "cls_only"
    assert "macro_f1" in metrics["test"] and "dice" not in metrics["test"]  # classification only
    assert load_config(out / "config.yaml").model.backbone == "compact"  # the multitask models' encoder


def test_cpu_description_reads_model_and_kernel_features(tmp_path: Path) -> None:
    from rlar.training.environment import cpu_description

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t\t: fpu avx2 amx_bf16 sse\n\n"
                       "processor\t: 1\nmodel name\t: Example CPU @ 2.0GHz\nflags\t\t: fpu avx2 amx_bf16 sse\n")
    assert cpu_description(cpuinfo) == ("Example CPU @ 2.0GHz", ["avx2", "amx_bf16"])
    model, features = cpu_description(tmp_path / "missing")  # not Linux: the platform's own name, no features
    assert model and features == []
