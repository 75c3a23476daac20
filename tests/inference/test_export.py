"""The exported ONNX model, run in ONNX Runtime, matches PyTorch on phantom and on real DDTI images.

Tolerance: 1e-4 absolute on every output (probabilities and h_tirads); float32 reordering differences measured
here are around 1e-7. TorchScript matches to the same tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlar.inference.export import export_model
from rlar.inference.geometry import prepare
from rlar.inference.images import read_input
from rlar.inference.loading import TrainedModel, load_trained_model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainedModel, Path]:
    pytest.importorskip("onnx")
    trained = load_trained_model(trained_run)
    return trained, export_model(trained, tmp_path_factory.mktemp("export") / "model.onnx", "onnx")


def _batch(images: list[np.ndarray], trained: TrainedModel) -> np.ndarray:
    height, width = (int(s) for s in trained.config.data.image_size)
    return np.stack([prepare(image, (height, width), crop=False)[0] for image in images]).astype(np.float32)


def _compare(trained: TrainedModel, path: Path, batch: np.ndarray) -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    names = [o.name for o in session.get_outputs()]
    assert names == ["mask_prob", "class_prob", "h_tirads"]
    outputs = dict(zip(names, session.run(None, {"image": batch})))
    with torch.no_grad():
        out = trained.model(torch.from_numpy(batch))
    np.testing.assert_allclose(outputs["mask_prob"], torch.sigmoid(out.mask_logits).numpy(), atol=TOLERANCE)
    np.testing.assert_allclose(outputs["class_prob"], torch.softmax(out.class_logits, 1).numpy(), atol=TOLERANCE)
    np.testing.assert_allclose(outputs["h_tirads"], out.h_tirads.numpy(), atol=TOLERANCE)


def test_onnx_matches_pytorch_on_phantom_images(exported: tuple[TrainedModel, Path]) -> None:
    from rlar.data.sources import open_source

    trained, path = exported
    source = open_source("phantom", None, n_cases=3, image_size=[80, 64], seed=3)
    _compare(trained, path, _batch([source[i].image for i in range(3)], trained))  # batch of 3: dynamic axis
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta["class_names"] == ["TR1", "TR2", "TR3", "TR4", "TR5"] and meta["source_sha256"] == trained.sha256


@pytest.mark.ddti
def test_onnx_matches_pytorch_on_ddti_images(exported: tuple[TrainedModel, Path], ddti_root: Path) -> None:
    trained, path = exported
    images = [read_input(p).frames[0] for p in sorted(ddti_root.glob("*_1.jpg"))[:4]]
    _compare(trained, path, _batch(images, trained))


def test_onnx_export_of_nodule_pooling(trained_run: Path, tmp_path: Path) -> None:
    """cls_pooling='nodule' pools with fixed stride kernels, so the traced graph holds for any batch (no
    size-dependent adaptive pooling, which the ONNX exporter refuses)."""
    pytest.importorskip("onnx")
    from dataclasses import replace

    from rlar.models import build_model

    trained = load_trained_model(trained_run)
    torch.manual_seed(0)
    model = build_model("multitask", "compact", num_classes=trained.label_space.num_classes,
                        compact_channels=[8, 16, 32, 32], cls_pooling="nodule", cls_levels=("enc3", "bottleneck"))
    nodule_model = replace(trained, model=model.eval())
    path = export_model(nodule_model, tmp_path / "nodule.onnx", "onnx")
    _compare(nodule_model, path, np.random.default_rng(0).random((3, 1, *trained.config.data.image_size),
                                                                 dtype=np.float32))


def test_torchscript_matches_pytorch(trained_run: Path, tmp_path: Path) -> None:
    trained = load_trained_model(trained_run)
    path = export_model(trained, tmp_path / "model.pt", "torchscript")
    scripted = torch.jit.load(str(path))
    batch = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        mask, probs, h = scripted(batch)
        out = trained.model(batch)
    torch.testing.assert_close(probs, torch.softmax(out.class_logits, 1), atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(mask, torch.sigmoid(out.mask_logits), atol=TOLERANCE, rtol=0)


def test_onnx_file_documents_its_preprocessing(exported: tuple[TrainedModel, Path]) -> None:
    import onnx

    trained, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["rlar_preprocessing"]) == trained.prep.to_dict()
    assert json.loads(props["rlar_class_names"]) == ["TR1", "TR2", "TR3", "TR4", "TR5"]
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["input"]["preprocessing"]["crop"] == "none"
