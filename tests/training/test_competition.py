"""The per-layer task-competition probe: what it writes, that its statistics are right, that it changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from rlar.training.competition import STATS, layer_stats
from rlar.training.config import load_config


def test_layer_stats_on_known_gradients() -> None:
    g = torch.randn(6, 4, 5, 5)
    same = layer_stats(g, 3.0 * g)
    assert same["n"] == 6 and same["cos_mean"] == pytest.approx(1.0, abs=1e-5)
    assert same["log10_norm_ratio"] == pytest.approx(-torch.log10(torch.tensor(3.0)).item(), abs=1e-5)
    opposite = layer_stats(g, -g * 1e-9)  # scale-free: a tiny gradient still has a direction
    assert opposite["cos_q90"] == pytest.approx(-1.0, abs=1e-5) and opposite["abs_cos_mean"] == pytest.approx(1.0)
    assert opposite["log10_norm_ratio"] == pytest.approx(9.0, abs=1e-4)
    spatial = torch.zeros(2, 3, 4, 4)
    spatial[:, :, 0, 0], spatial[:, :, 0, 1] = 1.0, -0.5  # mostly spatial structure, a small positive mean
    mixed = layer_stats(spatial, torch.ones(2, 3, 4, 4))  # a pooled classifier's gradient: constant over space
    assert mixed["cos_mean"] == pytest.approx(0.5 / (1.25**0.5 * 4), abs=1e-5)
    assert mixed["chan_cos_mean"] == pytest.approx(1.0, abs=1e-5)


def test_training_writes_competition_csv_and_the_probe_changes_nothing(tmp_path: Path,
                                                                       tiny_overrides: list[str]) -> None:
    from rlar.training.run import run_training

    base = [*tiny_overrides, "method=vanilla_mtl", "data.source=phantom",
            "data.options={n_cases: 16, image_size: [32, 32]}", "data.image_size=[32, 32]", "optim.epochs=2"]
    on = run_training(load_config(None, base), tmp_path / "on", progress=False)
    off = run_training(load_config(None, [*base, "training.competition_probe=0"]), tmp_path / "off", progress=False)
    frame = pd.read_csv(tmp_path / "on" / "competition.csv")
    assert list(frame.columns) == ["epoch", "layer", *STATS]
    assert sorted(frame["epoch"].unique()) == [0, 1, 2]  # before training and at each validation (val_every 1)
    assert frame.groupby("epoch")["layer"].nunique().min() >= 2
    assert frame["cos_q10"].le(frame["cos_q90"]).all() and frame["abs_cos_mean"].between(0, 1).all()
    assert not (tmp_path / "off" / "competition.csv").exists()
    # eval mode and no random draws: the probe leaves training bit for bit as it was
    assert json.dumps(on["test"], sort_keys=True, default=str) == json.dumps(off["test"], sort_keys=True, default=str)
    log_on, log_off = (pd.read_csv(tmp_path / side / "log.csv") for side in ("on", "off"))
    pd.testing.assert_series_equal(log_on["total"], log_off["total"])
