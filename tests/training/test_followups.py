"""The training layer's follow-up requests: checkpoint radiomics reference, weight-free rebuilds, typed data
options, the shared config-difference rule and a torch-free ``rlar.training`` package import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlar.errors import ConfigError
from rlar.training.config import load_config


def test_checkpoint_carries_raw_training_radiomics_and_predictor_reports_percentiles(
        tmp_path: Path, tiny_source: type, tiny_overrides: list[str]) -> None:
    from rlar.data.splits import load_splits
    from rlar.inference import Predictor
    from rlar.radiomics import compute_targets
    from rlar.radiomics.spec import FEATURE_NAMES
    from rlar.training.checkpoint import load_checkpoint
    from rlar.training.run import run_training

    cfg = load_config(None, [*tiny_overrides, "method=rlar", "optim.epochs=1"])
    run_training(cfg, tmp_path / "run", progress=False)
    reference = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["radiomics_reference"]

    assert reference["columns"] == list(FEATURE_NAMES)
    train_ids = load_splits(tmp_path / "run" / "splits.json")[cfg.data.fold]["train"]
    raw = compute_targets(tiny_source(n_cases=16), tmp_path / "cache", progress=False)
    expected = raw.loc[pd.Index(train_ids).intersection(raw.index), list(FEATURE_NAMES)].to_numpy()
    # Raw (unstandardised) values of exactly the training-side images, not the z-scored training targets.
    np.testing.assert_allclose(np.sort(np.asarray(reference["values"]), axis=0), np.sort(expected, axis=0))

    predictor = Predictor.from_run(tmp_path / "run")
    assert predictor.reference is not None
    name = FEATURE_NAMES[0]
    column = expected[:, 0]
    assert predictor.reference.percentile(name, float(column.max())) == 100.0
    below = predictor.reference.percentile(name, float(column.min()) - 1.0)
    assert below == 0.0


def test_rebuilding_a_pretrained_backbone_needs_no_weights_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlar.models.efficientnet_lite as lite
    from rlar.training.builders import build_model_from_config

    def missing(*args: object, **kwargs: object) -> None:
        raise ConfigError("model.options.pretrained", "weights package not installed (simulated)")

    monkeypatch.setattr(lite, "require", missing)
    cfg = load_config(None, ["method=vanilla_mtl", "model.backbone=efficientnet-lite0",
                             "model.options={pretrained: true}"])
    model = build_model_from_config(cfg, num_classes=5, load_weights=False)
    assert sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(ConfigError, match="simulated"):  # a fresh training model still loads the ImageNet weights
        build_model_from_config(cfg, num_classes=5)


def test_augmentation_and_source_options_are_validated_while_the_config_loads() -> None:
    cfg = load_config(None, ["data.augmentation={flip_prob: 0.0}"])
    assert cfg.data.augmentation == {"flip_prob": 0.0}
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.augmentation.flip_probb=0.1"])
    assert err.value.key == "data.augmentation.flip_probb"
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.augmentation.flip_prob=2"])
    assert err.value.key == "data.augmentation.flip_prob"
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.options.n_casez=3"])
    assert err.value.key == "data.options.n_casez"


def test_run_passes_the_augmentation_options_to_the_training_dataset(
        tmp_path: Path, tiny_source: type, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import rlar.data.dataset
    from rlar.training.run import run_training

    seen: list[object] = []
    original = rlar.data.dataset.ThyroidDataset.__init__

    def spy(self, *args, augmentation=None, **kwargs):
        seen.append((kwargs.get("augment"), augmentation))
        original(self, *args, augmentation=augmentation, **kwargs)

    monkeypatch.setattr(rlar.data.dataset.ThyroidDataset, "__init__", spy)
    cfg = load_config(None, [*tiny_overrides, "optim.epochs=1", "data.augmentation={gamma_prob: 0.0}"])
    run_training(cfg, tmp_path / "run", progress=False)
    assert (True, {"gamma_prob": 0.0}) in seen  # the training side, augmented with the configured options


def test_resume_rule_is_shared_with_the_experiment_runner() -> None:
    from rlar.experiments.runner import IGNORED_KEYS, config_difference
    from rlar.training.config_diff import RESUME_FREE_KEYS
    from rlar.training.config_diff import config_difference as key_difference

    assert RESUME_FREE_KEYS <= IGNORED_KEYS and ("data", "split_file") in IGNORED_KEYS
    saved = {"training": {"device": "cpu", "seed": 0}, "data": {"split_file": "a.json"}}
    moved = {"training": {"device": "cuda", "seed": 0}, "data": {"split_file": "b.json"}}
    assert key_difference(saved, moved) == ("data", "split_file")  # resuming: a different split file matters
    assert config_difference(saved, moved) is None  # the runner: its own grid split file may move
    assert config_difference(saved, {**moved, "training": {"device": "cuda", "seed": 1}}) == "training.seed"


def test_importing_the_training_config_does_not_import_torch() -> None:
    code = "import sys, rlar.training, rlar.training.config, rlar.cli.common; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
