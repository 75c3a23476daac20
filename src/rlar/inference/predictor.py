"""The one path from an image to a prediction, shared by ``rlar predict``, ``rlar serve`` and ``rlar evaluate``.

Modelled on nnU-Net's ``nnUNetPredictor``: :meth:`Predictor.from_run` takes a run folder, an experiment folder of
fold runs (``fold_*/``), or a checkpoint file; several fold models of one experiment are ensembled by default
(mean of probabilities), flip test-time augmentation is an option; :meth:`Predictor.predict` takes paths, file
bytes or arrays and needs no data source. Each input is mapped to the network exactly as in training (scan-area
crop when the training source cropped, aspect-preserving resize, padding, 8-bit quantisation; see
:mod:`.geometry`) and masks come back at the input's own resolution. A clip (multi-frame DICOM or TIFF) gets
per-frame masks and a nodule-level category: the mean class probabilities over the frames where a nodule was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlar import __version__
from rlar.data.labels import LabelSpace
from rlar.errors import DataError
from rlar.inference.evidence import (
    EvidenceRow,
    Measurements,
    RadiomicsReference,
    measure,
    model_readout,
    safe_evidence,
)
from rlar.inference.geometry import Geometry
from rlar.inference.images import DEFAULT_MAX_PIXELS, InputImage, read_input
from rlar.inference.loading import TrainedModel, load_trained_model, resolve_checkpoint
from rlar.inference.pipeline import predict_pixels
from rlar.radiomics import FEATURE_NAMES, RadiomicsParams, Standardiser, feature_mask
from rlar.runs import chosen_checkpoint, find_runs, has_checkpoint, select_runs
from rlar.training.config import RlarConfig
from rlar.training.preprocessing import Preprocessing

PHANTOM_NOTICE = ("this model was trained only on the synthetic phantom: its outputs on real ultrasound images "
                  "mean nothing")

Input = str | Path | bytes | np.ndarray | InputImage


@dataclass
class FrameResult:
    """One frame: nodule probability and mask at the input's resolution, class probabilities, geometry."""

    mask_prob: np.ndarray | None
    mask: np.ndarray | None
    class_prob: np.ndarray | None
    readout: dict[str, float] | None
    geometry: Geometry
    #: Optional task (ACR descriptor) -> (K,) probabilities over ``TaskSpec.classes``; empty without such heads.
    task_prob: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nodule_pixels(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else 0


@dataclass
class ImageResult:
    """Everything predicted for one input (a still image or a clip)."""

    input: InputImage
    frames: list[FrameResult]
    key_frame: int  # the frame the measurements and evidence describe (largest predicted nodule)
    class_prob: np.ndarray | None  # nodule-level class probabilities
    class_names: tuple[str, ...]
    nodule_found: bool | None  # None for a classification-only model
    measurements: Measurements | None
    evidence: list[EvidenceRow]
    evidence_note: str | None
    readout: dict[str, float] | None
    warnings: list[str] = field(default_factory=list)
    #: Nodule-level probabilities of each optional task the model has (the ACR descriptors), by task name.
    task_prob: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def category(self) -> str | None:
        return self.class_names[int(np.argmax(self.class_prob))] if self.class_prob is not None else None

    @property
    def key(self) -> FrameResult:
        return self.frames[self.key_frame]


def find_run_checkpoints(path: str | Path, folds: Sequence[int] | None = None,
                         seeds: Sequence[int] | None = None) -> list[Path]:
    """Checkpoint files of ``path``: a file, a run folder, ``rlar train --fold all``'s folder of ``fold_<k>`` runs,
    or a grid arm ``<grid>/<arm>`` / ``<grid>/<arm>/seed<k>`` (every seed's fold runs); see :func:`rlar.runs.find_runs`.
    ``folds`` / ``seeds`` pick some of them."""
    path = Path(path)
    runs = find_runs(path) if path.is_dir() else []
    if runs and not has_checkpoint(path):
        return [chosen_checkpoint(r.path) for r in select_runs(path, runs, folds, seeds)]
    if folds is not None or seeds is not None:
        raise DataError(path, "folds/seeds select runs of a folder of fold runs or a grid arm; this is a single run")
    return [resolve_checkpoint(path)]


def _same_experiment(members: Sequence[TrainedModel]) -> None:
    """Fold models may only be ensembled when they differ in nothing but the fold."""
    first = members[0]
    for other in members[1:]:
        checks = {
            "label space": (first.label_space, other.label_space),
            "image size": (tuple(first.config.data.image_size), tuple(other.config.data.image_size)),
            "preprocessing": (first.prep.to_dict() | {"label_space": None}, other.prep.to_dict() | {"label_space": None}),
            "architecture": ((first.config.model.arch, first.config.model.backbone),
                             (other.config.model.arch, other.config.model.backbone)),
            "data source": (first.config.data.source, other.config.data.source),
            "method": (first.config.method, other.config.method),
        }
        for what, (a, b) in checks.items():
            if a != b:
                raise DataError(other.path, f"cannot be ensembled with {first.path}: {what} differs ({a} vs {b})")


class Predictor:
    """Predict segmentation, TI-RADS category and evidence for images, with one model or a fold ensemble.

    Args:
        members: loaded models of one experiment (see :meth:`from_run`).
        tta: average with the horizontally flipped image (masks flipped back); None = as the run's config
            (section ``prediction``, which also sets the mask clean-up the model was scored with).
        device: torch device of the members.
        crop: scan-area crop before resizing; None = as the model's stored preprocessing says.
        batch_size: frames per forward pass (bounds memory on long clips).
        max_pixels: inputs declaring more pixels than this are refused before decoding.
        spacing_mm: (row, column) pixel spacing assumed for inputs whose header declares none.
    """

    def __init__(self, members: Sequence[TrainedModel], tta: bool | None = None, device: str | torch.device = "cpu",
                 crop: bool | None = None, batch_size: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS,
                 spacing_mm: tuple[float, float] | None = None) -> None:
        if not members:
            raise ValueError("a Predictor needs at least one model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _same_experiment(members)
        self.members = list(members)
        run_options = self.members[0].config.prediction
        self.options = run_options if tta is None else run_options.model_copy(update={"tta": bool(tta)})
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.max_pixels = int(max_pixels)
        self.spacing_mm = spacing_mm
        cfg = self.config
        self.preprocessing: Preprocessing = self.members[0].prep
        self.crop = self.preprocessing.crop if crop is None else bool(crop)
        self.network_shape = self.preprocessing.image_size
        self.radiomics_params = RadiomicsParams(**cfg.radiomics.params)
        lead = self.members[0].checkpoint
        self.standardisers = [self._standardiser(m) for m in self.members]
        self.reference = RadiomicsReference.from_checkpoint(lead.get("radiomics_reference"))
        exclude = cfg.radiomics.exclude_feature
        self.supervised = feature_mask(exclude) if exclude is not None else [True] * len(FEATURE_NAMES)

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def from_run(cls, path: str | Path | None = None, folds: Sequence[int] | None = None, tta: bool | None = None,
                 device: str | torch.device = "cpu", seeds: Sequence[int] | None = None, **options: Any) -> Predictor:
        """Load a run folder, a folder of fold runs or a grid arm (every run is ensembled unless ``folds`` /
        ``seeds`` pick some; :func:`find_run_checkpoints`), a checkpoint file, or a shipped-model folder
        (:mod:`rlar.inference.shipped`); None = the model shipped with rlar (a clear error when there is none)."""
        from rlar.inference.shipped import is_shipped_dir, load_shipped

        if path is None or is_shipped_dir(path):
            if folds is not None or seeds is not None:
                raise DataError(str(path or "shipped model"), "folds/seeds select runs of a folder; a shipped model "
                                                              "is used whole")
            return cls(load_shipped(path, device=device), tta=tta, device=device, **options)
        files = find_run_checkpoints(path, folds, seeds)
        return cls([load_trained_model(f, device=device) for f in files], tta=tta, device=device, **options)

    @staticmethod
    def _standardiser(member: TrainedModel) -> Standardiser | None:
        state = member.checkpoint.get("standardiser")
        if not state:
            return None
        try:
            return Standardiser.from_state_dict(state)
        except ValueError as err:
            raise DataError(member.path, f"checkpoint's radiomics standardiser is damaged ({err})") from None

    # ------------------------------------------------------------------------------------------- properties

    @property
    def tta(self) -> bool:
        return self.options.tta

    @property
    def config(self) -> RlarConfig:
        return self.members[0].config

    @property
    def label_space(self) -> LabelSpace:
        return self.members[0].label_space

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.label_space.class_names)

    @property
    def extra_tasks(self) -> tuple[str, ...]:
        """The optional tasks (ACR descriptors) the models have a head for (``model.options.extra_tasks``)."""
        return tuple(getattr(self.members[0].model, "extra_tasks", ()))

    @property
    def trained_on_phantom(self) -> bool:
        return any(m.config.data.source == "phantom" for m in self.members)

    @property
    def has_segmentation(self) -> bool:
        return self.config.model.arch in ("multitask", "segmentation")

    @property
    def has_classification(self) -> bool:
        return self.config.model.arch in ("multitask", "classification")

    @property
    def model_id(self) -> str | None:
        """The shipped model's id, or None for a model loaded from run folders / checkpoints."""
        value = self.members[0].checkpoint.get("model_id")
        return str(value) if value else None

    def describe(self) -> str:
        """Which model answers, in one line (printed by ``rlar predict`` and shown by ``rlar serve``)."""
        cfg = self.config
        what = f"{cfg.method} trained on {cfg.data.source}, {len(self.members)} member(s)"
        if self.model_id:
            return f"shipped model {self.model_id} ({what})"
        if len(self.members) == 1:
            return f"{self.members[0].path} ({what})"
        import os

        where = os.path.commonpath([str(m.path) for m in self.members])  # the fold folder or grid arm given
        return f"{where} ({what})"

    def provenance(self) -> dict[str, Any]:
        """The model's identity for reports: versions, weights hashes, config, folds."""
        from rlar.training.config import config_to_dict

        return {
            "rlar_version": __version__,
            "torch_version": torch.__version__,
            "models": [{"checkpoint": str(m.path), "sha256": m.sha256, "fold": m.fold,
                        "epoch": m.checkpoint.get("epoch")} for m in self.members],
            "ensemble": len(self.members),
            "model_id": self.model_id,
            "tta": self.tta,
            "mask_postprocess": self.options.mask_postprocess,
            "crop": self.crop,
            "preprocessing": self.preprocessing.to_dict(),
            "network_input_hw": list(self.network_shape),
            "label_space": {"scale": self.label_space.scale, "task": self.label_space.task},
            "trained_on": self.config.data.source,
            "config": config_to_dict(self.config),
        }

    # -------------------------------------------------------------------------------------------- predicting

    def predict(self, inputs: Sequence[Input] | Input) -> list[ImageResult]:
        """Predict every input (paths, file bytes, arrays or :class:`InputImage`), in order."""
        if isinstance(inputs, str | Path | bytes | np.ndarray | InputImage):
            inputs = [inputs]
        return [self.predict_one(item) for item in inputs]

    def read(self, item: Input, name: str | None = None) -> InputImage:
        """Decode one input with this predictor's pixel cap."""
        if isinstance(item, InputImage):
            return item
        return read_input(item, name=name, max_pixels=self.max_pixels, spacing_mm=self.spacing_mm)

    def predict_one(self, item: Input, name: str | None = None, evidence: bool = True) -> ImageResult:
        """Predict one input; ``evidence=False`` skips the 13 radiomics values (the costliest step after the
        network: ``rlar predict --no-report``)."""
        image = self.read(item, name)
        frames: list[FrameResult] = []
        for start in range(0, len(image.frames), self.batch_size):
            frames.extend(self._predict_frames(image.frames[start : start + self.batch_size]))
        return self._summarise(image, frames, evidence)

    def _predict_frames(self, grey_frames: Sequence[np.ndarray]) -> list[FrameResult]:
        predicted = predict_pixels([m.model for m in self.members], grey_frames, self.preprocessing, self.options,
                                   self.device, crop=self.crop)
        results = []
        for p in predicted:
            readouts = [model_readout(h, standardiser) for h, standardiser in zip(p.h_tirads, self.standardisers)]
            results.append(FrameResult(p.mask_prob, p.mask, p.class_prob, _mean_readout(readouts), p.geometry,
                                       p.task_prob))
        return results

    def _summarise(self, image: InputImage, frames: list[FrameResult], with_evidence: bool = True) -> ImageResult:
        warnings: list[str] = []
        if self.trained_on_phantom:
            warnings.append(PHANTOM_NOTICE)
        areas = [f.nodule_pixels for f in frames]
        key = int(np.argmax(areas))
        found: bool | None = None if not self.has_segmentation else areas[key] > 0
        with_nodule = [f for f, a in zip(frames, areas) if a > 0] or frames
        probs = None
        if self.has_classification:
            probs = np.mean([f.class_prob for f in with_nodule if f.class_prob is not None], axis=0)
        # Descriptors describe the nodule: averaged over the frames that show one, like the category.
        task_prob = {name: np.mean([f.task_prob[name] for f in with_nodule], axis=0) for name in frames[0].task_prob}
        measurements: Measurements | None = None
        evidence: list[EvidenceRow] = []
        note: str | None = None
        key_frame = frames[key]
        if found and key_frame.mask is not None:
            measurements = measure(key_frame.mask, image.spacing_mm, image.spacing_source)
        if found and key_frame.mask is not None and not with_evidence:
            note = "not computed (fast path without reports: --no-report)"
        elif found and key_frame.mask is not None:
            top, bottom, left, right = key_frame.geometry.crop_box
            evidence, note = safe_evidence(
                image.frames[key][top:bottom, left:right], key_frame.mask[top:bottom, left:right],
                self.radiomics_params, self.standardisers[0], self.reference, key_frame.readout,
                supervised=self.supervised, item=image.name,
            )
        elif found is False:
            note = "no nodule found: the predicted mask is empty, so there is nothing to measure"
        if evidence and self.reference is None:
            warnings.append("percentiles unavailable: the checkpoint stores no training distribution of the "
                            "radiomics features (z-scores use its standardiser's mean and std)")
        return ImageResult(
            input=image, frames=frames, key_frame=key, class_prob=probs, class_names=self.class_names,
            nodule_found=found, measurements=measurements, evidence=evidence, evidence_note=note,
            readout=key_frame.readout, warnings=warnings + list(image.notes), task_prob=task_prob,
        )


def _mean_readout(readouts: Sequence[dict[str, float] | None]) -> dict[str, float] | None:
    present = [r for r in readouts if r is not None]
    if not present:
        return None
    return {name: float(np.mean([r[name] for r in present])) for name in present[0]}
