"""Export the bare trained network to ONNX or TorchScript, with named inputs and outputs and a sidecar JSON.

The exported graph maps ``image`` (B, 1, H, W) float32 -- grey in [0, 1], already cropped, resized with its aspect
ratio kept and zero-padded to the training size, exactly as :func:`rlar.inference.geometry.prepare` does -- to
probabilities: ``mask_prob`` (B, 1, H, W) (sigmoid of the nodule logits), ``class_prob`` (B, C) (softmax over the
TI-RADS classes) and ``h_tirads`` (B, 13) (the standardised guided embedding). Outputs a network does not have
are left out. The batch dimension is dynamic. The sidecar ``<file>.json`` records class names, input size,
output names, the radiomics standardiser (to read h_tirads in feature units) and the source checkpoint's sha256,
so the file can be used without rlar.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlar import __version__
from rlar.errors import DataError
from rlar.inference.loading import TrainedModel
from rlar.radiomics import FEATURE_NAMES

FORMATS: tuple[str, ...] = ("onnx", "torchscript")
INPUT_NAME = "image"
OUTPUT_NAMES: tuple[str, ...] = ("mask_prob", "class_prob", "h_tirads")


class ProbabilityNet(nn.Module):
    """The network with its outputs turned into a tuple of probabilities (what exporters can trace)."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.outputs = outputs

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image)
        values = {
            "mask_prob": torch.sigmoid(out.mask_logits) if out.mask_logits is not None else None,
            "class_prob": torch.softmax(out.class_logits, dim=1) if out.class_logits is not None else None,
            "h_tirads": out.h_tirads,
        }
        return tuple(values[name] for name in self.outputs)


def output_names(trained: TrainedModel) -> tuple[str, ...]:
    """The outputs this network has, in :data:`OUTPUT_NAMES` order."""
    shape = tuple(int(s) for s in trained.config.data.image_size)
    with torch.no_grad():
        out = trained.model(torch.zeros(1, 1, *shape))
    present = {"mask_prob": out.mask_logits, "class_prob": out.class_logits, "h_tirads": out.h_tirads}
    return tuple(name for name in OUTPUT_NAMES if present[name] is not None)


def sidecar(trained: TrainedModel, fmt: str, outputs: tuple[str, ...]) -> dict[str, Any]:
    h, w = (int(s) for s in trained.config.data.image_size)
    return {
        "format": fmt,
        "rlar_version": __version__,
        "source_checkpoint": str(trained.path),
        "source_sha256": trained.sha256,
        "input": {"name": INPUT_NAME, "shape": ["batch", 1, h, w], "dtype": "float32",
                  "preprocessing": "grey in [0, 1]; scan-area crop if the training source cropped; aspect-preserving "
                                   "resize to fit, symmetric zero padding, 8-bit quantisation (rlar.inference.geometry)"},
        "outputs": list(outputs),
        "class_names": list(trained.label_space.class_names),
        "label_space": {"scale": trained.label_space.scale, "task": trained.label_space.task},
        "h_tirads_features": list(FEATURE_NAMES),
        "radiomics_standardiser": trained.checkpoint.get("standardiser"),
        "trained_on": trained.config.data.source,
    }


def export_model(trained: TrainedModel, out: str | Path, fmt: str = "onnx", opset: int = 17,
                 dynamo: bool = False) -> Path:
    """Write ``trained``'s network to ``out`` in ``fmt`` (``onnx`` / ``torchscript``) plus ``<out>.json``.

    ``dynamo=True`` uses torch's torch.export-based ONNX exporter (several times slower to export here); the
    default TorchScript-based exporter gives the same graph for these convolutional networks.
    """
    if fmt not in FORMATS:
        raise DataError(fmt, f"unknown export format; choose one of {', '.join(FORMATS)}")
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(path.name + ".partial").write_bytes(b"")
        path.with_name(path.name + ".partial").unlink()
    except OSError as exc:
        raise DataError(path, f"cannot write the export here ({type(exc).__name__}: {exc.strerror or exc})") from None
    model = trained.model.eval()
    outputs = output_names(trained)
    net = ProbabilityNet(model, outputs).eval()
    h, w = (int(s) for s in trained.config.data.image_size)
    example = torch.rand(2, 1, h, w)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and exporter deprecation chatter; the parity test is the check
        if fmt == "onnx":
            if dynamo:
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(net, (example,), str(path), input_names=[INPUT_NAME], output_names=list(outputs),
                                  dynamic_shapes={"image": {0: batch}}, dynamo=True)
            else:
                torch.onnx.export(net, (example,), str(path), input_names=[INPUT_NAME], output_names=list(outputs),
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                                  opset_version=opset, dynamo=False)
        else:
            traced = torch.jit.trace(net, (example,), check_trace=False)
            traced.save(str(path))
    meta = path.with_name(path.name + ".json")
    meta.write_text(json.dumps(sidecar(trained, fmt, outputs), indent=1) + "\n")
    return path
