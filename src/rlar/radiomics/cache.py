"""On-disk cache of radiomics features, one JSON file per (source, root, feature version, parameters).

Provenance written in the file: ``FEATURES_VERSION``, the full parameters, the source name and root, and per image
a hash of the decoded image and mask. A changed image or mask changes its hash and is recomputed; changed
parameters or a new feature version select a different file (so switching settings back and forth re-uses both).
JSON keeps the file readable and diff-able and round-trips float64 exactly (``repr`` digits).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlar.errors import DataError
from rlar.radiomics.params import RadiomicsParams
from rlar.radiomics.spec import FEATURE_NAMES, FEATURES_VERSION


def input_hash(image: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> str:
    """SHA-256 of the decoded inputs: shape and dtype (so a reshaped array differs), image bytes, mask bytes,
    and the pixel spacing when known (it changes taller_than_wide; None leaves the hash of older caches as is)."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(image), np.ascontiguousarray(mask)):
        digest.update(f"{array.shape}|{array.dtype.str}|".encode())
        digest.update(array.tobytes())
    if spacing_mm is not None:
        digest.update(f"spacing|{float(spacing_mm[0])!r}|{float(spacing_mm[1])!r}".encode())
    return digest.hexdigest()


@dataclass
class CacheEntry:
    """Cached outcome for one image: the 13 values, or the reason the extraction failed."""

    input_hash: str
    values: list[float] | None = None
    skip_reason: str | None = None


@dataclass
class FeatureCache:
    """Feature cache of one source. ``open`` loads it (or starts empty), ``save`` writes it atomically."""

    path: Path
    provenance: dict[str, Any]
    entries: dict[str, CacheEntry] = field(default_factory=dict)
    dirty: bool = False
    load_error: str | None = None  # set when an existing cache file could not be read

    @classmethod
    def open(
        cls, cache_dir: str | Path, source_name: str, root: str | Path | None, params: RadiomicsParams
    ) -> FeatureCache:
        """Load the cache file for this provenance (empty if absent, unreadable or of another provenance)."""
        provenance = {
            "features_version": FEATURES_VERSION,
            "feature_names": list(FEATURE_NAMES),
            "params": json.loads(params.to_json()),
            "source": source_name,
            "root": str(Path(root).resolve()) if root is not None else None,
        }
        key = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"radiomics-{source_name or 'source'}-{key}.json"
        cache = cls(path=path, provenance=provenance)
        if path.is_file():
            cache._load()
        return cache

    def _load(self) -> None:
        try:
            payload = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            # A truncated/corrupt cache is not fatal: it is rebuilt (and overwritten) from the images.
            self.dirty = True
            self.load_error = f"{self.path}: unreadable cache ({exc.__class__.__name__}), recomputing"
            return
        if payload.get("provenance") != self.provenance:
            self.dirty = True  # hash collision or hand-edited file: never trust values of another provenance
            return
        for image_id, raw in payload.get("entries", {}).items():
            self.entries[image_id] = CacheEntry(raw["input_hash"], raw.get("values"), raw.get("skip_reason"))

    def get(self, image_id: str, digest: str) -> CacheEntry | None:
        """The cached entry when its input hash matches ``digest``; None (a miss) otherwise."""
        entry = self.entries.get(image_id)
        return entry if entry is not None and entry.input_hash == digest else None

    def put(self, image_id: str, digest: str, values: np.ndarray | None = None, skip_reason: str | None = None) -> None:
        if (values is None) == (skip_reason is None):
            raise ValueError("put() needs exactly one of values / skip_reason")
        stored = None if values is None else [float(v) for v in values]
        self.entries[image_id] = CacheEntry(digest, stored, skip_reason)
        self.dirty = True

    def save(self) -> None:
        """Write the cache atomically (temp file + rename) so an interrupted run never leaves half a file."""
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "provenance": self.provenance,
            "entries": {
                image_id: {k: v for k, v in vars(e).items() if v is not None} for image_id, e in self.entries.items()
            },
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.dirty = False

    def values_of(self, entry: CacheEntry, image_id: str) -> np.ndarray:
        """The 13 cached values as float64, checking their count (guards against a hand-edited file)."""
        if entry.values is None or len(entry.values) != len(FEATURE_NAMES):
            raise DataError(self.path, f"cache entry for '{image_id}' does not hold {len(FEATURE_NAMES)} values")
        return np.asarray(entry.values, dtype=np.float64)
