"""The shipped-model format (issue 21 item 3): safetensors float16 + JSON, loaded without pickle, used by default."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rlar.cli.main import main
from rlar.errors import DataError
from rlar.inference import Predictor
from rlar.inference import shipped as shipped_module
from rlar.inference.shipped import MODEL_JSON, WEIGHTS_FILE, convert_run, load_shipped
from tests.inference import _rlar_trained_model


@pytest.fixture
def shipped(trained_run: Path, tmp_path: Path) -> Path:
    return convert_run(trained_run, tmp_path / "shipped", model_id="test-phantom-model")


def test_convert_writes_half_precision_safetensors_and_json(shipped: Path) -> None:
    from safetensors import safe_open

    meta = json.loads((shipped / MODEL_JSON).read_text())
    assert meta["model_id"] == "test-phantom-model" and meta["dtype"] == "float16"
    assert meta["preprocessing"]["image_size"] == [64, 64] and meta["label_space"]["scale"] == "acr"
    assert meta["standardiser"] is not None and len(meta["members"]) == 1
    with safe_open(str(shipped / WEIGHTS_FILE), framework="pt") as handle:
        dtypes = {handle.get_tensor(k).dtype for k in handle.keys()}  # noqa: SIM118 - safe_open has no iterator
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    total = sum(p.stat().st_size for p in shipped.iterdir())
    assert total <= 40e6


def test_shipped_model_loads_without_pickle_and_predicts_like_the_run(trained_run: Path, shipped: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a shipped model must load without unpickling anything")

    image = _rlar_trained_model.phantom_png(shipped.parent / "in")
    original, = Predictor.from_run(trained_run).predict(image)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    predictor = Predictor.from_run(shipped)
    assert predictor.model_id == "test-phantom-model" and "shipped model test-phantom-model" in predictor.describe()
    result, = predictor.predict(image)
    assert result.class_prob is not None and original.class_prob is not None
    np.testing.assert_allclose(result.class_prob, original.class_prob, atol=2e-2)  # float16 weights
    assert result.key.mask is not None and original.key.mask is not None
    assert (result.key.mask != original.key.mask).mean() < 0.02


def test_budget_is_checked_and_nothing_is_left_behind(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="over the 0.001 MB budget"):
        convert_run(trained_run, tmp_path / "big", max_total_mb=0.001)
    assert not any((tmp_path / "big").iterdir())


def test_predict_without_model_uses_the_shipped_one_or_says_how_to_get_one(
        shipped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    monkeypatch.setattr(shipped_module, "PACKAGED_DIR", tmp_path / "no_model_here")
    assert main(["predict", str(image), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "ships no trained model yet" in err and "--format shipped" in err
    with pytest.raises(DataError, match="ships no trained model"):
        load_shipped()
    monkeypatch.setattr(shipped_module, "PACKAGED_DIR", shipped)
    assert main(["predict", str(image), "--out", str(tmp_path / "o2"), "--no-progress"]) == 0
    assert "model: shipped model test-phantom-model" in capsys.readouterr().err
    report = json.loads((tmp_path / "o2" / "phantom_0.json").read_text())
    assert report["provenance"]["model_id"] == "test-phantom-model"


def test_export_format_shipped(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "--model", str(trained_run), "--format", "shipped", "--out", str(tmp_path / "s")]) == 0
    assert "wrote the shipped model" in capsys.readouterr().out
    assert (tmp_path / "s" / WEIGHTS_FILE).is_file() and (tmp_path / "s" / MODEL_JSON).is_file()
