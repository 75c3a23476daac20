"""Radiomics targets for a whole source: one row of 13 features per image with a mask, cached on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rlar.data.record import SkipLog
from rlar.data.sources.base import Source
from rlar.errors import DataError
from rlar.radiomics.cache import FeatureCache, input_hash
from rlar.radiomics.features import extract_features
from rlar.radiomics.params import RadiomicsParams
from rlar.radiomics.spec import FEATURE_NAMES, FEATURES_VERSION


def compute_targets(
    source: Source,
    cache_dir: str | Path,
    params: RadiomicsParams | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Extract (or load from cache) the 13 features of every sample of ``source`` that has a mask.

    Returns a DataFrame indexed by ``image_id`` with columns :data:`FEATURE_NAMES` (float64, never NaN), in the
    source's order. Items that cannot be used are not rows; they are listed in ``frame.attrs["skips"]``
    (``rlar.data.record.Skip``: item and reason). ``frame.attrs["cache"]`` is ``{"hits": n, "misses": m}``
    (a miss is an image whose features were computed in this call), ``frame.attrs["cache_path"]`` the cache
    file, and ``frame.attrs["features_version"]`` / ``["params"]`` the provenance.

    Every image is decoded to hash it (so a changed image or mask is recomputed); extraction runs only on misses.
    """
    params = params or RadiomicsParams()
    cache = FeatureCache.open(cache_dir, source.name, source.root, params)
    skips = SkipLog()
    if cache.load_error:
        skips.add(cache.path, cache.load_error)
    rows: dict[str, np.ndarray] = {}
    hits = misses = 0

    with_mask = [i for i, info in enumerate(source.infos) if info.has_mask]
    try:
        for index in tqdm(with_mask, desc=f"radiomics {source.name}", unit="img", disable=not progress):
            image_id = source.infos[index].image_id
            try:
                sample = source[index]
            except DataError as err:  # undecodable file: not cached, retried next run
                skips.add(err.item, err.reason)
                continue
            if sample.mask is None:
                why = sample.extras.get("mask_dropped") or "source lists a mask for this image but returned none"
                skips.add(image_id, f"{why}; no radiomics target")
                continue
            digest = input_hash(sample.image, sample.mask, sample.spacing_mm)
            entry = cache.get(image_id, digest)
            if entry is not None:
                hits += 1
                if entry.skip_reason is not None:
                    skips.add(image_id, entry.skip_reason)
                else:
                    rows[image_id] = cache.values_of(entry, image_id)
                continue
            misses += 1
            try:
                values = extract_features(
                    sample.image, sample.mask, params, item=image_id, spacing_mm=sample.spacing_mm
                )
            except DataError as err:  # e.g. empty mask: deterministic for these inputs, so cached too
                skips.add(image_id, err.reason)
                cache.put(image_id, digest, skip_reason=err.reason)
                continue
            rows[image_id] = values
            cache.put(image_id, digest, values=values)
    finally:
        cache.save()  # keep the work done so far even if the loop is interrupted

    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(FEATURE_NAMES), dtype=np.float64)
    frame.index.name = "image_id"
    frame.attrs["cache"] = {"hits": hits, "misses": misses}
    frame.attrs["skips"] = list(skips)
    frame.attrs["cache_path"] = str(cache.path)
    frame.attrs["features_version"] = FEATURES_VERSION
    frame.attrs["params"] = params.model_dump(mode="json")
    return frame
