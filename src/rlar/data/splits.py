"""Patient-level stratified k-fold splits, saved as an editable JSON file (nnU-Net's ``splits_final.json`` idea).

File format (a list, one entry per fold; image ids, so a user can move single images)::

    [{"train": ["12_1", "12_2", ...], "val": ["7_1", ...]}, ...]

Folds are stratified on the TI-RADS label (unknown labels form their own stratum) and grouped by patient, so no
patient's images fall on both sides. :func:`check_splits` enforces that for any file a user edits or supplies.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from rlar.data.labels import LabelSpace
from rlar.data.record import SampleInfo
from rlar.errors import DataError

Fold = dict[str, list[str]]


def make_splits(
    infos: Sequence[SampleInfo],
    n_folds: int = 5,
    seed: int = 0,
    label_space: LabelSpace | None = None,
) -> list[Fold]:
    """Split images into ``n_folds`` patient-grouped folds, stratified on the label (seeded, deterministic)."""
    if n_folds < 2:
        raise DataError("n_folds", f"need at least 2 folds, got {n_folds}")
    patients = {info.patient_id for info in infos}
    if len(patients) < n_folds:
        raise DataError("n_folds", f"{n_folds} folds requested but only {len(patients)} patients")
    strata = [_stratum(info, label_space) for info in infos]
    groups = [info.patient_id for info in infos]
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    ids = np.array([info.image_id for info in infos])
    folds: list[Fold] = []
    for train_idx, val_idx in splitter.split(np.zeros(len(infos)), strata, groups):
        folds.append({"train": sorted(ids[train_idx].tolist()), "val": sorted(ids[val_idx].tolist())})
    return folds


def _stratum(info: SampleInfo, label_space: LabelSpace | None) -> str:
    if info.tirads is None:
        return "unknown"
    if label_space is None or info.scale != label_space.scale:
        return info.tirads
    return str(label_space.encode(info.tirads))


def check_splits(folds: Sequence[Fold], infos: Sequence[SampleInfo]) -> None:
    """Refuse a split in which a patient falls on both sides of a fold, or that names unknown images.

    Raises DataError naming the fold, the patient and example image ids.
    """
    patient_of = {info.image_id: info.patient_id for info in infos}
    for k, fold in enumerate(folds):
        if set(fold) != {"train", "val"}:
            raise DataError(f"fold {k}", f"expected keys 'train' and 'val', got {sorted(fold)}")
        sides: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"train": [], "val": []})
        for side in ("train", "val"):
            unknown = [i for i in fold[side] if i not in patient_of]
            if unknown:
                raise DataError(f"fold {k} {side}", f"{len(unknown)} image id(s) not in the source, e.g. {unknown[:3]}")
            for image_id in fold[side]:
                sides[patient_of[image_id]][side].append(image_id)
        for patient, where in sides.items():
            if where["train"] and where["val"]:
                raise DataError(
                    f"fold {k}",
                    f"patient '{patient}' is on both sides (train: {where['train'][:3]}, val: {where['val'][:3]})",
                )
        overlap = set(fold["train"]) & set(fold["val"])
        if overlap:
            raise DataError(f"fold {k}", f"image(s) in both train and val, e.g. {sorted(overlap)[:3]}")


def save_splits(path: str | Path, folds: Sequence[Fold]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(folds), indent=1))


def load_splits(path: str | Path) -> list[Fold]:
    """Read a split file; accepts the list format above or ``{"folds": [...]}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot read split file ({exc})") from exc
    if isinstance(data, dict) and "folds" in data:
        data = data["folds"]
    if not isinstance(data, list) or not all(isinstance(f, dict) for f in data):
        raise DataError(path, "split file must be a list of {'train': [...], 'val': [...]} objects")
    return [{"train": list(f.get("train", [])), "val": list(f.get("val", []))} for f in data]
