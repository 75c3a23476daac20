"""Export the bare trained network to ONNX or TorchScript, with named inputs and outputs and a sidecar JSON.

The exported graph maps ``image`` (B, 1, H, W) float32 -- grey in [0, 1], already cropped, resized with its aspect
ratio kept and zero-padded to the training size, exactly as :func:`rlar.inference.geometry.prepare` does -- to
probabilities: ``mask_prob`` (B, 1, H, W) (sigmoid of the nodule logits), ``class_prob`` (B, C) (softmax over the
TI-RADS classes) and ``h_tirads`` (B, 13) (the standardised guided embedding). Outputs a network does not have
are left out. The batch dimension is dynamic. The probabilities come from :func:`rlar.models.predict_batch`, the
function every rlar prediction goes through, with the run's flip test-time augmentation traced in when its
``prediction`` section asks for it. The sidecar ``<file>.json`` records the model's stored preprocessing (crop
policy and parameters, size, intensity handling: what a caller must do to the pixels first), class names, output
names, the radiomics standardiser (to read h_tirads in feature units) and the source checkpoint's sha256, so the
file can be used without rlar. Files are written atomically (a temporary file, then a rename): a full disk leaves
no truncated model behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlar import __version__
from rlar.errors import DataError
from rlar.inference.loading import TrainedModel
from rlar.models import predict_batch
from rlar.radiomics import FEATURE_NAMES

FORMATS: tuple[str, ...] = ("onnx", "torchscript")
#: ONNX opsets the TorchScript-based exporter of the pinned torch writes.
OPSETS = range(7, 21)
INPUT_NAME = "image"
OUTPUT_NAMES: tuple[str, ...] = ("mask_prob", "class_prob", "h_tirads")


class ProbabilityNet(nn.Module):
    """The network with its outputs turned into a tuple of probabilities (what exporters can trace)."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...], tta: bool = False) -> None:
        super().__init__()
        self.model = model
        self.outputs = outputs
        self.tta = tta

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = predict_batch(self.model, image, tta=self.tta)
        values = {"mask_prob": out.mask_prob, "class_prob": out.class_prob, "h_tirads": out.h_tirads}
        return tuple(value for name in self.outputs if (value := values[name]) is not None)


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
                  "preprocessing": trained.prep.to_dict(),
                  "preprocessing_steps": ("grey in [0, 1]; the scan-area crop when preprocessing.crop is 'scan_area' "
                                          "(rlar.data.crop.scan_area_box with crop_params); aspect-preserving resize "
                                          "to fit, symmetric zero padding, 8-bit quantisation "
                                          "(rlar.inference.geometry.prepare)")},
        "flip_tta_included": bool(trained.config.prediction.tta),
        "mask_threshold_and_cleanup": trained.config.prediction.model_dump(),
        "outputs": list(outputs),
        "class_names": list(trained.label_space.class_names),
        "label_space": {"scale": trained.label_space.scale, "task": trained.label_space.task},
        "h_tirads_features": list(FEATURE_NAMES),
        "radiomics_standardiser": trained.checkpoint.get("standardiser"),
        "trained_on": trained.config.data.source,
    }


def _stamp_onnx(path: str, trained: TrainedModel) -> None:
    """Write the preprocessing record and class names into the ONNX file's own metadata (``metadata_props``), so
    the model documents its input even without the sidecar."""
    import onnx

    model = onnx.load(path)
    onnx.helper.set_model_props(model, {
        "rlar_preprocessing": json.dumps(trained.prep.to_dict()),
        "rlar_class_names": json.dumps(list(trained.label_space.class_names)),
        "rlar_version": __version__,
        "rlar_source_sha256": trained.sha256,
    })
    onnx.save(model, path)


def _atomic_target(path: Path) -> str:
    """A temporary file beside ``path`` (same file system, so the final rename is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    return tmp


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def export_model(trained: TrainedModel, out: str | Path, fmt: str = "onnx", opset: int = 17,
                 dynamo: bool = False) -> Path:
    """Write ``trained``'s network to ``out`` in ``fmt`` (``onnx`` / ``torchscript``) plus ``<out>.json``.

    ``dynamo=True`` uses torch's torch.export-based ONNX exporter (several times slower to export here); the
    default TorchScript-based exporter gives the same graph for these convolutional networks. Raises DataError
    naming the file for an unknown format, an opset outside :data:`OPSETS`, or a failed write (full disk: the
    earlier file, if any, is kept and no partial file is left).
    """
    if fmt not in FORMATS:
        raise DataError(fmt, f"unknown export format; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx" and not dynamo and int(opset) not in OPSETS:
        raise DataError(f"opset {opset}", f"not an ONNX opset this exporter writes; choose {OPSETS.start} to "
                                          f"{OPSETS.stop - 1} (default 17)")
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _atomic_target(path)
    except OSError as exc:
        raise DataError(path, f"cannot write the export here ({type(exc).__name__}: {exc.strerror or exc})") from None
    model = trained.model.eval()
    outputs = output_names(trained)
    net = ProbabilityNet(model, outputs, tta=bool(trained.config.prediction.tta)).eval()
    h, w = trained.prep.image_size
    example = torch.rand(2, 1, h, w)
    meta = path.with_name(path.name + ".json")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and exporter deprecation chatter; the parity test is the check
            if fmt == "onnx":
                if dynamo:
                    batch = torch.export.Dim("batch", min=1, max=4096)
                    torch.onnx.export(net, (example,), tmp, input_names=[INPUT_NAME], output_names=list(outputs),
                                      dynamic_shapes={"image": {0: batch}}, dynamo=True)
                else:
                    torch.onnx.export(net, (example,), tmp, input_names=[INPUT_NAME], output_names=list(outputs),
                                      dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                                      opset_version=opset, dynamo=False)
            else:
                traced = torch.jit.trace(net, (example,), check_trace=False)
                traced.save(tmp)
        if Path(tmp).stat().st_size == 0:
            raise OSError(28, "the exporter wrote an empty file")
        if fmt == "onnx":
            _stamp_onnx(tmp, trained)
        meta_tmp = _atomic_target(meta)
        try:
            Path(meta_tmp).write_text(json.dumps(sidecar(trained, fmt, outputs), indent=1) + "\n")
            os.replace(tmp, path)
            os.replace(meta_tmp, meta)
        finally:
            Path(meta_tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise DataError(path, f"cannot write the export ({exc.strerror or exc}; is the disk full?); no file was "
                              "left behind") from None
    except RuntimeError as exc:  # torch's writers raise RuntimeError on a full disk; the exporter on a bad opset
        raise DataError(path, f"the export failed ({_first_line(exc)})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
