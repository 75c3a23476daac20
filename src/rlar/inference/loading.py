"""Rebuild trained networks from checkpoints, ready for prediction (no data, radiomics or mask needed).

Everything that can be wrong with a model file is reported as a :class:`~rlar.errors.DataError` naming the file
and what to do: a run folder given where a checkpoint file was expected is resolved (``<run>/checkpoints/best.pt``),
a text or empty file is called what it is, a file that holds arbitrary pickled objects is refused without ever
suggesting to load it unsafely, and weights that do not fit the network their own config describes say which
parameters differ instead of surfacing torch's RuntimeError.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlar.data.labels import LabelSpace
from rlar.errors import ConfigError, DataError
from rlar.runs import CHECKPOINT_NAMES, chosen_checkpoint, find_runs, has_checkpoint
from rlar.training.checkpoint import check_finite_weights, load_checkpoint
from rlar.training.config import RlarConfig, validate_config
from rlar.training.preprocessing import Preprocessing, preprocessing_of

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
_PICKLE_MAGIC = b"\x80"  # legacy torch.save / raw pickle protocol 2+


@dataclass
class TrainedModel:
    """A network in eval mode with what is needed to interpret its outputs."""

    model: nn.Module
    config: RlarConfig
    label_space: LabelSpace
    checkpoint: dict[str, Any]
    path: Path = field(default_factory=lambda: Path("."))
    sha256: str = ""
    preprocessing: Preprocessing | None = None

    def __post_init__(self) -> None:
        if self.preprocessing is None:  # built by hand (tests): what the checkpoint stores or its config implies
            self.preprocessing = preprocessing_of(self.checkpoint)

    @property
    def prep(self) -> Preprocessing:
        assert self.preprocessing is not None
        return self.preprocessing

    @property
    def fold(self) -> int | None:
        fold = self.checkpoint.get("fold", self.config.data.fold)
        return int(fold) if fold is not None else None


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file (the weights' identity in reports)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from ``path``: the file itself, or the run folder's chosen checkpoint
    (:func:`rlar.runs.chosen_checkpoint`: the one its metrics.json names, else ``checkpoints/best.pt``, else ``last.pt``).

    Raises DataError with a hint when nothing usable is there.
    """
    path = Path(path)
    if path.is_dir():
        if has_checkpoint(path):
            return chosen_checkpoint(path)  # the one the run reports (rlar.runs decides for every consumer)
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        folds = find_runs(path)
        hint = (f"; it holds {len(folds)} runs ({', '.join(r.label for r in folds[:6])}"
                f"{', ...' if len(folds) > 6 else ''}): give one of them, or use `rlar predict --model` which "
                "ensembles them") if folds else (
                "; expected a run folder with checkpoints/best.pt (written by `rlar train`) or a .pt file")
        raise DataError(path, f"is a folder without a checkpoint{hint}")
    if not path.exists():
        raise DataError(path, "checkpoint file does not exist")
    return path


def _check_file_kind(path: Path) -> None:
    """Refuse empty and non-checkpoint files before torch reads them (clear message, no unsafe advice)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise DataError(path, f"cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not head:
        raise DataError(path, "checkpoint file is empty (zero bytes): was it copied completely?")
    if not head.startswith(_ZIP_MAGIC) and not head.startswith(_PICKLE_MAGIC):
        looks = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "another kind of file"
        raise DataError(path, f"not a PyTorch checkpoint (it looks like {looks}); give a best.pt/last.pt written by "
                              "`rlar train`, or its run folder")


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """Resolve ``path`` and load the checkpoint with ``weights_only=True``; (file, state dict)."""
    file = resolve_checkpoint(path)
    _check_file_kind(file)
    try:
        state = load_checkpoint(file, map_location=device)
    except DataError as err:
        if "weights_only" in err.reason or "Weights only" in err.reason:
            # torch's own message advises weights_only=False, i.e. executing whatever the file contains: never.
            raise DataError(file, "the file holds Python objects other than tensors and plain values; rlar "
                                  "refuses to load it because unpickling such a file can run arbitrary code") from None
        raise
    return file, state


def build_network(cfg: RlarConfig, num_classes: int) -> nn.Module:
    """The network a config describes, built by the one shared builder (docs/interfaces.md); no pretrained file needed."""
    from rlar.training.builders import build_model_from_config

    return build_model_from_config(cfg, num_classes, load_weights=False)


def _describe_mismatch(model: nn.Module, weights: dict[str, Any]) -> str:
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in weights and hasattr(weights[k], "shape") and tuple(weights[k].shape) != tuple(own[k].shape)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape differs", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts) or "parameters differ"


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Load ``path`` (a ``best.pt`` / ``last.pt`` or a run folder) with ``weights_only=True`` and rebuild its network.

    Raises rlar.errors.DataError naming the file when it is not a usable rlar checkpoint.
    """
    file, ckpt = read_checkpoint(path, device)
    try:
        cfg = validate_config(ckpt["config"])
    except ConfigError as err:
        raise DataError(file, f"its config is not valid for this rlar version ({err}); was it written by another "
                              "version?") from None
    raw_space = ckpt.get("label_space")
    if not raw_space:
        raise DataError(file, "checkpoint records no label space (written by an older rlar?)")
    try:
        label_space = LabelSpace(**raw_space)
    except (ConfigError, TypeError) as err:
        raise DataError(file, f"checkpoint's label space {raw_space} is not one this rlar knows ({err})") from None
    try:
        model = build_network(cfg, label_space.num_classes)
    except (ConfigError, TypeError, ValueError) as err:
        raise DataError(file, f"cannot rebuild the network its config describes ({err})") from None
    weights = ckpt["model"]
    if not isinstance(weights, dict):
        raise DataError(file, "checkpoint 'model' entry is not a state dict")
    check_finite_weights(weights, file)
    try:
        preprocessing = preprocessing_of(ckpt)
    except (ValueError, TypeError, ConfigError) as err:
        raise DataError(file, f"checkpoint's preprocessing record is damaged ({err})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise DataError(file, "the weights do not fit the network its own config describes "
                              f"({cfg.model.arch}/{cfg.model.backbone}, {label_space.num_classes} classes): "
                              f"{_describe_mismatch(model, weights)}") from None
    model.to(device).eval()
    return TrainedModel(model=model, config=cfg, label_space=label_space, checkpoint=ckpt, path=file,
                        sha256=sha256_of(file), preprocessing=preprocessing)
