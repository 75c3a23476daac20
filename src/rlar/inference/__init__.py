"""Using a trained model: load it, predict on new images, explain the prediction, write reports.

- :mod:`.loading`: checkpoints -> networks, with clear errors for every kind of bad model file.
- :mod:`.images`: decode paths, uploaded bytes or arrays (frames, pixel spacing, pixel cap before decoding).
- :mod:`.geometry`: the training image -> network mapping and its inverse.
- :mod:`.predictor`: :class:`Predictor` (fold ensembles, flip TTA, clips).
- :mod:`.evidence`: measurements and the 13 radiomics values of the predicted nodule.
- :mod:`.report`, :mod:`.outputs`, :mod:`.batch`: JSON report, pictures, folder runs.
- :mod:`.export`: ONNX / TorchScript export of the bare network.

Imports are lazy so that ``import rlar.inference`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlar.inference.loading import TrainedModel, load_trained_model
    from rlar.inference.predictor import ImageResult, Predictor

__all__ = ["ImageResult", "Predictor", "TrainedModel", "load_trained_model"]

_LAZY = {
    "ImageResult": "rlar.inference.predictor",
    "Predictor": "rlar.inference.predictor",
    "TrainedModel": "rlar.inference.loading",
    "load_trained_model": "rlar.inference.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlar.inference' has no attribute {name!r}")
