"""Every kind of bad model file gets a clear DataError naming it (issue 11), and good ones load from a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from rlar.errors import DataError
from rlar.inference.loading import load_trained_model, resolve_checkpoint
from rlar.training.checkpoint import load_checkpoint, save_checkpoint


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(DataError, match="notes.pt") as info:
        load_trained_model(bogus)
    assert "looks like text" in str(info.value)
    assert "weights_only" not in str(info.value)  # never pass on torch's advice to load unsafely


def test_a_pickle_of_arbitrary_objects_is_refused_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "rlar-checkpoint", "payload": argparse.Namespace(run="anything")}, path)
    with pytest.raises(DataError, match="arbitrary code") as info:
        load_trained_model(path)
    assert "weights_only" not in str(info.value)


def test_zero_byte_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="zero bytes"):
        load_trained_model(empty)
    with pytest.raises(DataError, match="does not exist"):
        load_trained_model(tmp_path / "missing.pt")


def test_a_run_folder_is_accepted_and_an_empty_folder_gets_a_hint(trained_run: Path, tmp_path: Path) -> None:
    assert resolve_checkpoint(trained_run) == trained_run / "checkpoints" / "best.pt"
    model = load_trained_model(trained_run)
    assert model.path.name == "best.pt" and len(model.sha256) == 64
    with pytest.raises(DataError, match="checkpoints/best.pt"):
        load_trained_model(tmp_path)


def test_weights_that_do_not_fit_their_config_are_a_clear_error(trained_run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    state["config"]["model"]["deep_dim"] = state["config"]["model"]["deep_dim"] + 3  # config no longer matches
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, {k: v for k, v in state.items() if k not in ("format", "version")})
    with pytest.raises(DataError, match="do not fit the network its own config describes") as info:
        load_trained_model(broken)
    assert "shape differs" in str(info.value)


def test_unknown_label_space_and_missing_label_space(trained_run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    body = {k: v for k, v in state.items() if k not in ("format", "version")}
    other = tmp_path / "other_space.pt"
    save_checkpoint(other, {**body, "label_space": {"scale": "bethesda", "task": "multiclass"}})
    with pytest.raises(DataError, match="label space"):
        load_trained_model(other)
    none = tmp_path / "no_space.pt"
    save_checkpoint(none, {**body, "label_space": None})
    with pytest.raises(DataError, match="no label space"):
        load_trained_model(none)


def test_a_checkpoint_from_a_newer_version_is_refused(trained_run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    state["version"] = 999
    newer = tmp_path / "newer.pt"
    torch.save(state, newer)
    with pytest.raises(DataError, match="newer"):
        load_trained_model(newer)


def test_old_checkpoint_without_preprocessing_derives_it_from_its_config(trained_run: Path, tmp_path: Path) -> None:
    """Issue 21 item 1: checkpoints written before the preprocessing record still load, with the record their
    config implies; new checkpoints store it."""
    import torch

    from rlar.inference.loading import load_trained_model
    from rlar.training.checkpoint import load_checkpoint

    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    stored = state.pop("preprocessing")
    assert stored["crop"] == "none" and stored["image_size"] == [64, 64]
    assert stored["label_space"] == {"scale": "acr", "task": "multiclass", "classes": ["TR1", "TR2", "TR3", "TR4", "TR5"]}
    old = tmp_path / "old.pt"
    torch.save(state, old)  # as an older rlar wrote it: no 'preprocessing' key
    loaded = load_trained_model(old)
    assert "preprocessing" not in loaded.checkpoint and loaded.prep.to_dict() == stored


def test_ddti_config_implies_the_scan_area_crop() -> None:
    from rlar.training.preprocessing import Preprocessing, preprocessing_from_config

    prep = preprocessing_from_config({"data": {"source": "ddti", "options": {}, "image_size": [128, 128]}},
                                     {"scale": "ddti", "task": "multiclass"})
    assert prep.crop and prep.label_space["classes"] == ["2", "3", "4a", "4b", "4c", "5"]
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    assert not preprocessing_from_config({"data": {"source": "ddti", "options": {"crop": False}}}).crop
    assert not preprocessing_from_config({"data": {"source": "folder", "options": {}}}).crop


def test_a_full_disk_while_saving_a_checkpoint_is_a_clear_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23: torch.save raises RuntimeError (not OSError) on a full disk; the previous file is kept, no temp file."""
    import torch

    from rlar.training import checkpoint as checkpoint_module

    target = tmp_path / "best.pt"
    target.write_bytes(b"previous")

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DataError, match="disk full"):
        checkpoint_module.save_checkpoint(target, {"model": {}, "config": {}, "epoch": 1})
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
