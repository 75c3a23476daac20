"""Nested, group-aware, stratified splits, saved as an editable JSON file (nnU-Net's ``splits_final.json`` idea).

The held-out protocol (docs/protocol.md): an **outer** grouped stratified k-fold gives each fold's ``test`` images,
which are only ever scored once, at the end; inside the outer training images an **inner** grouped stratified
split gives ``val`` (checkpoint selection, early stopping) and leaves ``train``. Selecting on the fold one reports
would be optimistic (issue 6), so the reported numbers never come from the images that chose the checkpoint.

File format (a list, one entry per outer fold; image ids, so a user can move single images)::

    [{"train": ["12_1", ...], "val": ["7_1", ...], "test": ["3_1", ...]}, ...]

Groups default to patients; :mod:`rlar.data.grouping` widens them to content groups (identical or near-identical
images across cases). Strata are the TI-RADS labels (unknown labels form their own stratum).
:func:`check_splits` refuses any group on two sides of a fold, for files a user edits or supplies.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from rlar.data.labels import LabelSpace
from rlar.data.record import SampleInfo
from rlar.errors import DataError, DataWarning

Fold = dict[str, list[str]]
#: The sides of every fold, in file order.
SIDES: tuple[str, ...] = ("train", "val", "test")
#: Default share of the outer training images held out as the inner validation split.
DEFAULT_VAL_FRACTION = 0.2
#: A split whose folds cover less than this share of the source's images gets a warning.
MIN_COVERAGE = 0.5


def _group_list(infos: Sequence[SampleInfo], groups: Sequence[str] | Mapping[str, str] | None) -> list[str]:
    if groups is None:
        return [info.patient_id for info in infos]
    if isinstance(groups, Mapping):
        return [groups[info.image_id] for info in infos]
    if len(groups) != len(infos):
        raise ValueError(f"{len(groups)} groups for {len(infos)} images")
    return list(groups)


def inner_folds(val_fraction: float) -> int:
    """Number of inner folds whose one fold is about ``val_fraction`` of the outer training images (>= 2)."""
    if not 0.0 < val_fraction <= 0.5:
        raise DataError("val_fraction", f"must be in (0, 0.5], got {val_fraction}")
    return max(2, round(1.0 / val_fraction))


def make_splits(
    infos: Sequence[SampleInfo],
    n_folds: int = 5,
    seed: int = 0,
    label_space: LabelSpace | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    groups: Sequence[str] | Mapping[str, str] | None = None,
) -> list[Fold]:
    """Nested grouped stratified folds: ``test`` from an outer k-fold, ``val`` from an inner split of the rest.

    Args:
        infos: the images to split.
        n_folds: outer folds; every image is in exactly one fold's ``test``.
        seed: seeds both levels (deterministic).
        label_space: encodes the stratum (classes of the task) where the info's scale matches.
        val_fraction: approximate share of each outer training set that becomes ``val`` (one fold of
            ``round(1 / val_fraction)`` inner grouped folds).
        groups: split group per image (aligned list or image_id mapping); default: the patient.
    """
    if n_folds < 2:
        raise DataError("n_folds", f"need at least 2 folds, got {n_folds}")
    n_inner = inner_folds(val_fraction)
    group_of = _group_list(infos, groups)
    n_groups = len(set(group_of))
    if n_groups < n_folds:
        raise DataError("n_folds", f"{n_folds} folds requested but only {n_groups} patients (split groups)")
    strata = np.array([_stratum(info, label_space) for info in infos])
    group_arr = np.array(group_of)
    ids = np.array([info.image_id for info in infos])
    folds: list[Fold] = []
    for k, (train_idx, test_idx) in enumerate(_grouped_kfold(n_folds, strata, group_arr, seed)):
        inner_groups = group_arr[train_idx]
        if len(set(inner_groups.tolist())) < n_inner:
            raise DataError(
                f"fold {k}",
                f"its training side has {len(set(inner_groups.tolist()))} patients (split groups), too few for an "
                f"inner validation split of 1/{n_inner} (data.val_fraction={val_fraction})",
            )
        fit_idx, val_idx = _grouped_kfold(n_inner, strata[train_idx], inner_groups, seed + 1 + k)[0]
        folds.append({
            "train": sorted(ids[train_idx][fit_idx].tolist()),
            "val": sorted(ids[train_idx][val_idx].tolist()),
            "test": sorted(ids[test_idx].tolist()),
        })
    return folds


def _grouped_kfold(n_splits: int, strata: np.ndarray, groups: np.ndarray, seed: int
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped k-fold, stratified where the strata allow it (best effort: rare levels cannot be spread over every
    fold, and when every stratum is smaller than ``n_splits`` scikit-learn refuses, so the folds are only grouped)."""
    x = np.zeros(len(groups))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            return list(splitter.split(x, strata, groups))
        except ValueError:
            return list(GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x, strata, groups))


def _stratum(info: SampleInfo, label_space: LabelSpace | None) -> str:
    if info.tirads is None:
        return "unknown"
    if label_space is None or info.scale != label_space.scale:
        return info.tirads
    return str(label_space.encode(info.tirads))


def validate_structure(data: Any, where: str = "split") -> list[Fold]:
    """Check the shape of a split: a list of ``{"train": [...], "val": [...], "test": [...]}`` of image-id strings.

    Raises DataError naming ``where``, the fold and the side for: a non-list, a fold that is not a mapping, the
    old two-key format, a side that is null or a string (a string would otherwise be read as its characters),
    and ids that are not strings.
    """
    if not isinstance(data, list) or not data:
        raise DataError(where, "a split must be a non-empty list of {'train': [...], 'val': [...], 'test': [...]}")
    folds: list[Fold] = []
    for k, fold in enumerate(data):
        if not isinstance(fold, Mapping):
            raise DataError(f"{where}: fold {k}", f"must be an object with keys {list(SIDES)}, got {type(fold).__name__}")
        keys = set(fold)
        if keys == {"train", "val"}:
            raise DataError(
                f"{where}: fold {k}",
                "has only 'train' and 'val' (the old format, whose 'val' was both the selection and the reported "
                "fold). The held-out protocol needs 'train', 'val' (selection) and 'test' (reported) per fold: "
                "delete the file to have the folds made again, or add a 'test' list to every fold",
            )
        if keys != set(SIDES):
            missing, extra = sorted(set(SIDES) - keys), sorted(keys - set(SIDES))
            raise DataError(f"{where}: fold {k}",
                            f"expected keys {list(SIDES)}" + (f"; missing {missing}" if missing else "")
                            + (f"; unexpected {extra}" if extra else ""))
        clean: Fold = {}
        for side in SIDES:
            value = fold[side]
            if value is None:
                raise DataError(f"{where}: fold {k} '{side}'", "is null; expected a list of image ids")
            if isinstance(value, str):
                raise DataError(f"{where}: fold {k} '{side}'",
                                f"is the string {value[:40]!r}; expected a list of image ids, e.g. [{value[:20]!r}]")
            if not isinstance(value, list | tuple):
                raise DataError(f"{where}: fold {k} '{side}'", f"expected a list of image ids, got {type(value).__name__}")
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                raise DataError(f"{where}: fold {k} '{side}'", f"image ids must be strings, got {bad[:3]!r}")
            clean[side] = list(value)
        folds.append(clean)
    return folds


def check_splits(folds: Sequence[Fold], infos: Sequence[SampleInfo],
                 groups: Sequence[str] | Mapping[str, str] | None = None, where: str = "split") -> None:
    """Refuse a split that names unknown images, puts an image or a group on two sides, or has an empty side.

    Groups default to patients (pass the content grouping to check that too). Raises DataError naming the fold,
    the group and example image ids. Warns (:class:`~rlar.errors.DataWarning`) when a fold leaves out images that
    other folds use, naming the fold, the count and a few ids, and when the folds leave most of the source's images
    out. Both are warnings, not errors: a split may leave images out on purpose (an excluded case, a subset study).
    """
    folds = validate_structure(list(folds), where)
    group_list = _group_list(infos, groups)
    group_of = {info.image_id: g for info, g in zip(infos, group_list, strict=True)}
    used: set[str] = set()
    per_fold: list[set[str]] = []
    for k, fold in enumerate(folds):
        for side in SIDES:
            if not fold[side]:
                raise DataError(f"{where}: fold {k}", f"'{side}' is empty")
            unknown = [i for i in fold[side] if i not in group_of]
            if unknown:
                raise DataError(f"{where}: fold {k} {side}",
                                f"{len(unknown)} image id(s) not in the source, e.g. {unknown[:3]}")
        seen: dict[str, str] = {}
        for side in SIDES:
            for image_id in fold[side]:
                if image_id in seen:
                    raise DataError(f"{where}: fold {k}", f"image '{image_id}' is in both {seen[image_id]} and {side}")
                seen[image_id] = side
        sides_of: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for image_id, side in seen.items():
            sides_of[group_of[image_id]][side].append(image_id)
        for group, where_ in sorted(sides_of.items()):
            if len(where_) > 1:
                detail = ", ".join(f"{side}: {sorted(ids)[:3]}" for side, ids in sorted(where_.items()))
                what = "patient" if "+" not in group else "group (patients sharing identical images)"
                raise DataError(f"{where}: fold {k}", f"{what} '{group}' is on more than one side ({detail})")
        used.update(seen)
        per_fold.append(set(seen))
    for k, fold_ids in enumerate(per_fold):
        # Nested k-fold: every fold divides the same images into train / val / test. Images that other folds use
        # but this one does not are most likely an editing slip (issue 23: such a split trained silently).
        dropped = sorted(used - fold_ids)
        if dropped:
            warnings.warn(
                f"{where}: fold {k} leaves out {len(dropped)} image(s) that the other folds use, e.g. {dropped[:5]}; "
                f"they are neither trained, validated nor tested in this fold (is the split file complete?)",
                DataWarning, stacklevel=2,
            )
    coverage = len(used) / max(1, len(group_of))
    if coverage < MIN_COVERAGE:
        warnings.warn(
            f"{where}: the folds use {len(used)} of the source's {len(group_of)} images ({coverage:.0%}); "
            f"{len(group_of) - len(used)} images are left out of training and testing (is this the right split file?)",
            stacklevel=2,
        )


def save_splits(path: str | Path, folds: Sequence[Fold]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(folds), indent=1))


def load_splits(path: str | Path) -> list[Fold]:
    """Read a split file (the list format above, or ``{"folds": [...]}``); its shape is checked on reading."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot read split file ({exc})") from None
    if isinstance(data, dict) and "folds" in data:
        data = data["folds"]
    return validate_structure(data, where=str(path))
