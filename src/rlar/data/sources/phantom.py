"""The built-in synthetic phantom as a data source (``open_source("phantom")``): no download, no root folder.

Every case is generated from its own child seed (``numpy.random.SeedSequence(seed, spawn_key=(i, ...))``), so
item ``i`` is the same whatever order items are read in, whichever other items exist, and in any worker
process: ``_scan`` draws only the cheap metadata (descriptors, levels) and ``_load`` renders pixels lazily.

Streams per case ``i`` (image ``k``, reader ``r``):
    (i, 0)        descriptors (and the target level when ``balanced``)
    (i, 1)        anatomy and nodule geometry (shared by all images of the case: same true mask)
    (i, 2, k)     acquisition: speckle, TGC, gain of image k
    (i, 3, k, r)  reader r's annotation of image k
    (i, 4, k)     which reader is used for ``"random_reader"``

Labels and masks: ``label_from``/``mask_from`` pick the truth, reader ``reader_index`` of the panel
(``"reader"``), or one reader drawn per image (``"random_reader"``; the same reader for the label and the mask
of an image, as one annotator makes both). Whatever is chosen, ``Sample.extras`` carries the truth and every
reader's answer: ``true_mask``, ``true_level``, ``acr_points``, ``descriptors``, ``reader_masks``,
``reader_levels``, ``reader_names``, ``reader_used`` (index or None). ``SampleInfo.descriptors`` are always the
true ones.

``root``: the phantom reads no files. ``None`` (or an empty string, which is what an unset CLI option
gives) is accepted; anything else raises :class:`DataError`, because silently ignoring a path the user meant
to be read would be worse than an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlar.data.phantom.acr import ACR_LEVELS, acr_level, acr_points
from rlar.data.phantom.readers import ReaderModel, default_panel
from rlar.data.phantom.render import render_case, sample_descriptors
from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source
from rlar.errors import ConfigError, DataError

LABEL_ORIGINS: tuple[str, ...] = ("truth", "reader", "random_reader")


class PhantomSource(Source):
    """Synthetic thyroid ultrasound images with exact ground truth and simulated readers.

    Args:
        root: must be None (or ""): the phantom is generated, not read.
        n_cases: number of nodules (patients); ``patient_id`` = ``phantom-{i:04d}``.
        image_size: (H, W) of every image, at least 32x32.
        seed: master seed; the same seed gives identical pixels, labels and reader annotations.
        readers: number of default readers (see :func:`default_panel`) or a list of :class:`ReaderModel`.
        label_from, mask_from: "truth", "reader" or "random_reader" (see module docstring).
        images_per_case: images per nodule (``image_id`` = ``phantom-{i:04d}_{k}``), differing in speckle,
            TGC and gain but sharing the true mask: a patient-grouped split is then essential, as with
            real multi-frame data.
        reader_index: which reader ``"reader"`` means.
        balanced: draw the true level uniformly over TR1..TR5 and then descriptors conditioned on it (equal
            classes); False draws descriptors from the prior only (TR1 and TR5 rarer).
        disagreement: scale of the default panel's departures from the truth (see :func:`default_panel`;
            1 = the shipped styles); only with an integer ``readers``.
    """

    name = "phantom"
    scale = "acr"

    def __init__(
        self,
        root: str | Path | None = None,
        n_cases: int = 200,
        image_size: Sequence[int] = (128, 128),
        seed: int = 0,
        readers: int | Sequence[ReaderModel] = 3,
        label_from: str = "truth",
        mask_from: str = "truth",
        images_per_case: int = 1,
        reader_index: int = 0,
        balanced: bool = True,
        disagreement: float = 1.0,
    ) -> None:
        if root is not None and str(root) != "":
            raise DataError(root, "the phantom source is synthetic and reads no files; leave its root unset (None)")
        if isinstance(n_cases, bool) or not isinstance(n_cases, int | np.integer) or n_cases < 1:
            raise ConfigError("data.options.n_cases", f"must be a positive integer, got {n_cases!r}")
        size = tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 32:
            raise ConfigError("data.options.image_size", f"must be (H, W) with both sides >= 32, got {tuple(image_size)!r}")
        if not isinstance(images_per_case, int | np.integer) or images_per_case < 1:
            raise ConfigError("data.options.images_per_case", f"must be a positive integer, got {images_per_case!r}")
        for key, value in (("label_from", label_from), ("mask_from", mask_from)):
            if value not in LABEL_ORIGINS:
                raise ConfigError(f"data.options.{key}", f"unknown value '{value}'; choose one of {', '.join(LABEL_ORIGINS)}")
        if isinstance(readers, int | np.integer):
            try:  # default_panel validates its arguments; name them as the config does
                panel = default_panel(int(readers), seed=seed, pixel_scale=min(size) / 128.0,
                                      disagreement=float(disagreement))
            except ConfigError as err:
                raise ConfigError(f"data.options.{err.key}", err.reason) from None
        else:
            if disagreement != 1.0:
                raise ConfigError("data.options.disagreement", "scales the default panel only; set it with an integer 'readers'")
            panel = list(readers)
            bad = [i for i, r in enumerate(panel) if not isinstance(r, ReaderModel)]
            if bad:
                raise ConfigError("data.options.readers", f"item {bad[0]} is not a ReaderModel")
        uses_readers = {label_from, mask_from} - {"truth"}
        if uses_readers and not panel:
            raise ConfigError("data.options.readers", f"label_from/mask_from use readers but the panel is empty ({uses_readers})")
        if "reader" in uses_readers and not 0 <= reader_index < len(panel):
            raise ConfigError("data.options.reader_index", f"{reader_index} is not a reader of the panel (0..{len(panel) - 1})")

        self.n_cases = int(n_cases)
        self.image_size: tuple[int, int] = size
        self.seed = int(seed)
        self.readers: list[ReaderModel] = panel
        self.label_from = label_from
        self.mask_from = mask_from
        self.images_per_case = int(images_per_case)
        self.reader_index = int(reader_index)
        self.balanced = bool(balanced)
        self.disagreement = float(disagreement)
        super().__init__(None)

    # ---- seeded streams ------------------------------------------------------------------------------------
    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def _reader_used(self, i: int, k: int, origin: str) -> int | None:
        if origin == "truth":
            return None
        if origin == "reader":
            return self.reader_index
        return int(self._rng(i, 4, k).integers(len(self.readers)))

    # ---- Source interface ----------------------------------------------------------------------------------
    def _scan(self) -> Iterator[SampleInfo]:
        for i in range(self.n_cases):
            rng = self._rng(i, 0)
            target = ACR_LEVELS[int(rng.integers(len(ACR_LEVELS)))] if self.balanced else None
            descriptors = sample_descriptors(rng, level=target)
            true_level = acr_level(acr_points(descriptors))
            for k in range(self.images_per_case):
                used = self._reader_used(i, k, self.label_from)
                if used is None:
                    level = true_level
                else:
                    # Same child stream that ReaderModel.annotate uses for the grade (see its docstring).
                    level = self.readers[used].grade(true_level, self._rng(i, 3, k, used).spawn(2)[0])
                yield SampleInfo(
                    image_id=f"phantom-{i:04d}_{k}",
                    patient_id=f"phantom-{i:04d}",
                    source=self.name,
                    tirads=level,
                    scale=self.scale,
                    descriptors=dict(descriptors),
                    has_mask=True,
                    location=(i, k),
                )

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        i, k = info.location
        case_seed = int(np.random.SeedSequence(self.seed, spawn_key=(i,)).generate_state(1)[0])
        case = render_case(
            self._rng(i, 1),
            self.image_size,
            info.descriptors,
            view_rng=self._rng(i, 2, k),
            seed=case_seed,
        )
        reader_masks, reader_levels = [], []
        for r, reader in enumerate(self.readers):
            mask_r, level_r = reader.annotate(case, self._rng(i, 3, k, r))
            reader_masks.append(mask_r)
            reader_levels.append(level_r)
        used_mask = self._reader_used(i, k, self.mask_from)
        # random_reader for both: _reader_used draws from the same (i, 4, k) stream, so it is the same reader.
        mask = case.mask if used_mask is None else reader_masks[used_mask]
        extras: dict[str, Any] = {
            "true_mask": case.mask,
            "true_level": case.level,
            "acr_points": case.points,
            "descriptors": dict(case.descriptors),
            "reader_masks": reader_masks,
            "reader_levels": reader_levels,
            "reader_names": [r.name for r in self.readers],
            "reader_used": self._reader_used(i, k, self.label_from),
            "mask_reader_used": used_mask,
        }
        return case.image, mask, extras


__all__ = ["LABEL_ORIGINS", "PhantomSource"]
