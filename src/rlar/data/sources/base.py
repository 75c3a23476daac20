"""The interface every data source implements.

A source scans its root once at construction (cheap: metadata only, pixels untouched), keeps a list of
:class:`SampleInfo` and a :class:`SkipLog`, and decodes pixels lazily in ``__getitem__`` so that a 36 GB
video file costs no more memory than the frames in use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from rlar.data.record import Sample, SampleInfo, SkipLog
from rlar.errors import DataError


class Source(Sequence[Sample], ABC):
    """A sequence of samples from one dataset layout.

    Subclasses set ``name`` and ``scale`` and implement :meth:`_scan` and :meth:`_load`.
    ``_load`` raises :class:`DataError` (naming the file and the reason) for an item it cannot decode.
    """

    name: str = ""
    scale: str | None = None  # TI-RADS scale this source writes: "ddti" or "acr"

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None and not self.root.exists():
            raise DataError(self.root, f"{self.name} root folder does not exist")
        self.skips = SkipLog()
        self.infos: list[SampleInfo] = list(self._scan())

    @abstractmethod
    def _scan(self) -> Iterator[SampleInfo]:
        """Yield one SampleInfo per usable image; record unusable items with ``self.skips.add``."""

    @abstractmethod
    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """Decode (image float32 HxW in [0,1], mask bool HxW or None, extras) for one item."""

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        info = self.infos[index]
        image, mask, extras = self._load(info)
        if mask is not None and mask.shape != image.shape:
            raise DataError(info.image_id, f"mask shape {mask.shape} differs from image shape {image.shape}")
        return Sample(info=info, image=image, mask=mask, extras=extras)

    def verify(self, progress: bool = True) -> None:
        """Decode every item once; move the ones that fail into ``skips`` (used by ``rlar data summary``)."""
        from tqdm.auto import tqdm

        kept: list[SampleInfo] = []
        for i, info in enumerate(tqdm(self.infos, desc=f"verifying {self.name}", disable=not progress)):
            try:
                self.__class__.__getitem__(self, i)
            except DataError as err:
                self.skips.add(err.item, err.reason)
                continue
            kept.append(info)
        self.infos = kept
