"""The interface every data source implements.

A source scans its root once at construction (cheap: metadata only, pixels untouched), keeps a list of
:class:`SampleInfo` and a :class:`SkipLog`, and decodes pixels lazily in ``__getitem__`` so that a 36 GB
video file costs no more memory than the frames in use.

Options: the keyword arguments of a subclass's ``__init__`` (after ``root``) are its options. Their typed
pydantic model is derived from that signature (:meth:`Source.options_model`), so a source declares each option
once, in its constructor, and ``open_source`` validates user input against it (unknown keys, wrong types) with
errors naming ``data.options.<key>``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, create_model

from rlar.data.record import Sample, SampleInfo, SkipLog
from rlar.data.sources.masks import MIN_MASK_EXTENT, MIN_MASK_PIXELS, mask_problem
from rlar.errors import ConfigError, DataError


class Source(Sequence[Sample], ABC):
    """A sequence of samples from one dataset layout.

    Subclasses set ``name`` and ``scale`` and implement :meth:`_scan` and :meth:`_load`.
    ``_load`` raises :class:`DataError` (naming the file and the reason) for an item it cannot decode.
    Sources that read a dataset folder set ``needs_root = True``: a missing root is then a ConfigError naming
    ``data.root`` (generated or in-memory sources leave it False and receive ``root=None``).

    Masks below the minimum size (``min_mask_pixels`` / ``min_mask_extent``, see :mod:`.masks`) are dropped
    when decoded: the sample comes back with ``mask=None`` and the reason is recorded once in ``skips``.
    """

    name: str = ""
    scale: str | None = None  # TI-RADS scale this source writes: "ddti" or "acr"
    needs_root: ClassVar[bool] = False  # True for sources that read a dataset folder
    min_mask_pixels: int = MIN_MASK_PIXELS
    min_mask_extent: int = MIN_MASK_EXTENT

    def __init__(self, root: str | Path | None) -> None:
        self.root: Path | None = self.check_root(root)
        self.skips = SkipLog()
        self._dropped_masks: set[str] = set()
        self.infos: list[SampleInfo] = list(self._scan())

    @abstractmethod
    def _scan(self) -> Iterator[SampleInfo]:
        """Yield one SampleInfo per usable image; record unusable items with ``self.skips.add``."""

    @abstractmethod
    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """Decode (image float32 HxW in [0,1], mask bool HxW or None, extras) for one item."""

    @classmethod
    def check_root(cls, root: str | Path | None) -> Path | None:
        """``root`` as a Path (None when unset): ConfigError ``data.root`` if this source needs one and it is unset,
        DataError if it does not exist."""
        if root is None or str(root) == "":
            if cls.needs_root:
                raise ConfigError("data.root", f"the {cls.name} source reads a dataset folder: give its root (--set data.root=DIR "
                                                   "to train/experiment, --root DIR to data/radiomics/evaluate)")
            return None
        path = Path(root)
        if not path.exists():
            raise DataError(path, f"{cls.name} root folder does not exist")
        return path

    @classmethod
    def options_model(cls) -> type[BaseModel]:
        """The pydantic model of this source's options, derived once from its ``__init__`` signature."""
        cached: type[BaseModel] | None = cls.__dict__.get("_options_model")
        if cached is not None:
            return cached
        try:
            hints = typing.get_type_hints(cls.__init__)
        except (NameError, TypeError):  # an annotation only importable under TYPE_CHECKING: accept any value
            hints = {}
        fields: dict[str, Any] = {}
        for i, (key, param) in enumerate(inspect.signature(cls.__init__).parameters.items()):
            if i < 2 or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue  # self, root
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[key] = (hints.get(key, Any), default)
        model: type[BaseModel] = create_model(
            f"{cls.__name__}Options",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        cls._options_model = model  # type: ignore[attr-defined]
        return model

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        info = self.infos[index]
        image, mask, extras = self._load(info)
        if mask is not None and mask.shape != image.shape:
            raise DataError(info.image_id, f"mask shape {mask.shape} differs from image shape {image.shape}")
        if mask is not None:
            problem = mask_problem(mask, self.min_mask_pixels, self.min_mask_extent)
            if problem is not None:
                problem += "; image kept without mask"
                dropped: set[str] = self.__dict__.setdefault("_dropped_masks", set())  # also if __init__ was bypassed
                if info.image_id not in dropped:
                    dropped.add(info.image_id)
                    self.skips.add(info.image_id, problem)
                # From now on the listing says so too: summaries decoding every item count it without a mask.
                info = dataclasses.replace(info, has_mask=False)
                self.infos[index] = info
                extras = {**extras, "mask_dropped": problem}
                mask = None
        return Sample(info=info, image=image, mask=mask, extras=extras)

    def verify(self, progress: bool = True) -> None:
        """Decode every item once; move the ones that fail into ``skips`` (used by ``rlar data summary``).

        Items whose mask was dropped as too small stay, marked ``has_mask=False`` (by ``__getitem__``).
        """
        from tqdm.auto import tqdm

        kept: list[SampleInfo] = []
        for i in tqdm(range(len(self.infos)), desc=f"verifying {self.name}", disable=not progress):
            try:
                sample = self.__class__.__getitem__(self, i)
            except DataError as err:
                self.skips.add(err.item, err.reason)
                continue
            kept.append(sample.info)
        self.infos = kept
