"""Are the radiomics features (or a model's h_tirads read-out) aligned with the readers' ACR descriptors?

For each feature and the ACR descriptor it is meant to measure, a binary contrast of descriptor values (e.g.
composition cystic/spongiform vs the rest) and the direction the feature should move (e.g. ``cystic_fraction``
higher in cystic nodules). The score is the AUROC of the feature for that contrast, **oriented by the expected
direction**: ``AUROC = P(sign * x_pos > sign * x_neg)`` (+ half the ties), with ``sign`` = +1 when the feature
should be higher in the positive group and -1 when lower. So 0.5 = no information, 1 = the feature separates the
groups perfectly in the clinically expected direction, and < 0.5 = it separates them the *wrong* way round.

Labels of DDTI (and most sources) are per patient/case and several images share them, so the 95% confidence
interval is a percentile bootstrap that resamples *patients* with replacement (all images of a drawn patient go
in), not images. The AUROC itself is over images (every image with a feature row and a label counts once).

Used by ``benchmarks/descriptor_alignment.py``; see docs/radiomics.md "Are the features aligned with the readers'
descriptors?".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from rlar.data.record import DESCRIPTOR_VALUES
from rlar.data.sources.base import Source
from rlar.radiomics.spec import FEATURES_BY_NAME


@dataclass(frozen=True)
class Contrast:
    """One feature against one binary split of an ACR descriptor.

    ``direction`` is +1 when the feature should be higher in ``positive`` than in ``negative``, -1 when lower.
    Descriptor values in neither group (e.g. macrocalcifications in "punctate vs none") are left out.
    """

    feature: str
    descriptor: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    direction: int

    def __post_init__(self) -> None:
        if self.feature not in FEATURES_BY_NAME:
            raise KeyError(f"unknown feature '{self.feature}'")
        known = DESCRIPTOR_VALUES[self.descriptor]  # KeyError for an unknown descriptor
        bad = [v for v in (*self.positive, *self.negative) if v not in known]
        if bad or set(self.positive) & set(self.negative) or not self.positive or not self.negative:
            raise ValueError(f"{self}: groups must be disjoint, non-empty values of {known}; bad: {bad}")
        if self.direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {self.direction}")

    @property
    def label(self) -> str:
        """Human-readable contrast, e.g. ``composition: cystic/spongiform (+) vs rest``."""
        arrow = "higher" if self.direction > 0 else "lower"
        return f"{self.descriptor}: {'/'.join(self.positive)} vs {'/'.join(self.negative)} ({arrow} expected)"


_NOT_SMOOTH = ("ill_defined", "lobulated_irregular", "extrathyroidal_extension")
_ALL_COMPOSITION = DESCRIPTOR_VALUES["composition"]
_CYSTIC = ("cystic", "spongiform")
# DDTI's "predominantly cystic" is mixed_cystic: with it, the contrast issue 19 measured (0.74 on true masks).
_MOSTLY_CYSTIC = ("cystic", "spongiform", "mixed_cystic")


def _rest(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for v in _ALL_COMPOSITION if v not in values)


#: The contrasts checked by default. The first, second, fourth, fifth and eighth are the five issue 19 measured;
#: the rest are the other features that belong to the same criteria, and coarser or finer splits. ``shape`` (taller-than-wide) is listed but most sources (DDTI
#: included) record no shape descriptor: the table then says "no labels".
CONTRASTS: tuple[Contrast, ...] = (
    Contrast("cystic_fraction", "composition", _MOSTLY_CYSTIC, _rest(_MOSTLY_CYSTIC), 1),
    Contrast("echo_ratio", "echogenicity", ("hypoechoic", "very_hypoechoic"), ("isoechoic", "hyperechoic"), -1),
    Contrast("echo_contrast", "echogenicity", ("hypoechoic", "very_hypoechoic"), ("isoechoic", "hyperechoic"), -1),
    Contrast("margin_irregularity", "margin", _NOT_SMOOTH, ("smooth",), 1),
    Contrast("margin_sharpness", "margin", _NOT_SMOOTH, ("smooth",), -1),
    Contrast("solidity", "margin", _NOT_SMOOTH, ("smooth",), -1),
    Contrast("circularity", "margin", _NOT_SMOOTH, ("smooth",), -1),
    Contrast("bright_focus_fraction", "echogenic_foci", ("punctate",), ("none",), 1),
    Contrast("bright_focus_fraction", "echogenic_foci", ("punctate", "macrocalcifications", "rim"), ("none",), 1),
    Contrast("cystic_fraction", "composition", ("cystic", "spongiform", "mixed_cystic", "mixed_solid", "mixed"),
             ("solid",), 1),
    Contrast("cystic_fraction", "composition", _CYSTIC, _rest(_CYSTIC), 1),
    Contrast("intensity_entropy", "composition", _MOSTLY_CYSTIC, _rest(_MOSTLY_CYSTIC), 1),
    Contrast("glcm_contrast", "composition", _MOSTLY_CYSTIC, _rest(_MOSTLY_CYSTIC), 1),
    Contrast("glcm_homogeneity", "composition", _MOSTLY_CYSTIC, _rest(_MOSTLY_CYSTIC), -1),
    Contrast("echo_ratio", "echogenicity", ("very_hypoechoic",), ("hypoechoic", "isoechoic", "hyperechoic"), -1),
    # each margin feature against the margin kind it is meant for (DDTI: ill-defined; micro-/macrolobulated and
    # spiculated = lobulated_irregular)
    Contrast("margin_sharpness", "margin", ("ill_defined",), ("smooth",), -1),
    Contrast("margin_irregularity", "margin", ("lobulated_irregular",), ("smooth",), 1),
    Contrast("solidity", "margin", ("lobulated_irregular",), ("smooth",), -1),
    Contrast("taller_than_wide", "shape", ("taller_than_wide",), ("wider_than_tall",), 1),
)


def oriented_auroc(labels: np.ndarray, values: np.ndarray, direction: int) -> float:
    """AUROC of ``direction * values`` for binary ``labels`` (1 = positive group); NaN when a group is empty."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, direction * np.asarray(values, dtype=np.float64)))


def _rank_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The same AUROC from mid-ranks (Mann-Whitney U / (n_pos n_neg), ties count half): ~30x faster than
    ``roc_auc_score`` for the thousands of bootstrap resamples (equality is tested)."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def patient_bootstrap_ci(
    labels: np.ndarray,
    values: np.ndarray,
    patients: Sequence[str] | np.ndarray,
    direction: int,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of :func:`oriented_auroc`, resampling patients (clusters of images) with replacement.

    Resamples in which one group is empty are skipped (they have no AUROC); with balanced groups of
    tens of patients this never happens. Returns (NaN, NaN) when fewer than half of the resamples are usable.
    """
    labels = np.asarray(labels, dtype=bool)
    scores_all = direction * np.asarray(values, dtype=np.float64)
    codes, inverse = np.unique(np.asarray(patients), return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(codes))]
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(codes), len(codes))
        index = np.concatenate([members[k] for k in drawn])
        score = _rank_auroc(labels[index], scores_all[index])
        if np.isfinite(score):
            scores.append(score)
    if len(scores) < n_boot / 2:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(scores, [alpha, 1.0 - alpha])
    return float(low), float(high)



def paired_difference_ci(
    labels: np.ndarray,
    values_a: np.ndarray,
    values_b: np.ndarray,
    patients: Sequence[str] | np.ndarray,
    direction: int,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """AUROC(b) - AUROC(a) on the same images, with a percentile CI from the same patient resamples for both.

    Used to decide whether a candidate feature definition (b) beats the current one (a): adopt only when the
    interval lies above 0. Returns (difference, low, high).
    """
    labels = np.asarray(labels, dtype=bool)
    score_a = direction * np.asarray(values_a, dtype=np.float64)
    score_b = direction * np.asarray(values_b, dtype=np.float64)
    codes, inverse = np.unique(np.asarray(patients), return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(codes))]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        index = np.concatenate([members[k] for k in rng.integers(0, len(codes), len(codes))])
        diff = _rank_auroc(labels[index], score_b[index]) - _rank_auroc(labels[index], score_a[index])
        if np.isfinite(diff):
            diffs.append(diff)
    point = _rank_auroc(labels, score_b) - _rank_auroc(labels, score_a)
    if len(diffs) < n_boot / 2:
        return point, float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return point, float(low), float(high)

def alignment_table(
    features: pd.DataFrame,
    descriptors: Mapping[str, Mapping[str, str | None]],
    patients: Mapping[str, str],
    contrasts: Sequence[Contrast] = CONTRASTS,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per contrast: the oriented AUROC of the feature, its patient-bootstrap 95% CI and the counts.

    Args:
        features: index image_id, one column per feature (``compute_targets`` output, or a de-standardised
            h_tirads read-out); only the columns named by ``contrasts`` are used.
        descriptors: image_id -> canonical descriptors (``SampleInfo.descriptors``).
        patients: image_id -> patient id (the bootstrap cluster).
        contrasts: the contrasts to score.

    Returns:
        DataFrame with columns feature, descriptor, positive, negative, direction, auroc, ci_low, ci_high, n_pos,
        n_neg (images), patients_pos, patients_neg. A contrast with an empty group has NaN scores (``n_pos`` or
        ``n_neg`` is 0), e.g. taller-than-wide on a source without shape labels.
    """
    rows = []
    for contrast in contrasts:
        ids, labels = [], []
        for image_id in features.index:
            value = descriptors.get(image_id, {}).get(contrast.descriptor)
            if value in contrast.positive or value in contrast.negative:
                ids.append(image_id)
                labels.append(value in contrast.positive)
        y = np.asarray(labels, dtype=bool)
        x = features.loc[ids, contrast.feature].to_numpy(dtype=np.float64) if ids else np.empty(0)
        groups = np.asarray([patients[i] for i in ids])
        auroc = oriented_auroc(y, x, contrast.direction) if ids else float("nan")
        low, high = (
            patient_bootstrap_ci(y, x, groups, contrast.direction, n_boot, seed)
            if np.isfinite(auroc)
            else (float("nan"), float("nan"))
        )
        rows.append(
            {
                "feature": contrast.feature,
                "descriptor": contrast.descriptor,
                "positive": "/".join(contrast.positive),
                "negative": "/".join(contrast.negative),
                "direction": "higher" if contrast.direction > 0 else "lower",
                "auroc": auroc,
                "ci_low": low,
                "ci_high": high,
                "n_pos": int(y.sum()),
                "n_neg": int((~y).sum()),
                "patients_pos": len(set(groups[y])) if len(y) else 0,
                "patients_neg": len(set(groups[~y])) if len(y) else 0,
            }
        )
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame, title: str | None = None) -> str:
    """The table as Markdown (NaN AUROC -> "no labels" / "one group empty")."""
    lines = [f"**{title}**", ""] if title else []
    lines += [
        "| feature | descriptor contrast (positive vs negative) | expected | AUROC | 95% CI (patient bootstrap) | "
        "n images (pos/neg) | patients (pos/neg) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        if np.isfinite(row.auroc):
            score, ci = f"{row.auroc:.3f}", f"{row.ci_low:.3f}-{row.ci_high:.3f}"
        else:
            score, ci = ("no labels" if row.n_pos + row.n_neg == 0 else "one group empty"), "-"
        lines.append(
            f"| `{row.feature}` | {row.descriptor}: {row.positive} vs {row.negative} | {row.direction} in positive "
            f"| {score} | {ci} | {row.n_pos}/{row.n_neg} | {row.patients_pos}/{row.patients_neg} |"
        )
    return "\n".join(lines)


@dataclass
class Readout:
    """A trained model's h_tirads read-out on the held-out test images of its run(s), in feature units.

    ``features``: index image_id, the 13 feature columns (de-standardised with each checkpoint's standardiser; an
    image held out by several runs, e.g. seeds of a grid arm, gets the mean of their read-outs);
    ``descriptors`` / ``patients``: image_id -> canonical descriptors / patient id of those images;
    ``runs``: the checkpoint files used, ``skipped``: images of the test folds that could not be predicted,
    ``source``: the runs' data source as opened for the read-out (to compute the true-mask features of the same
    images).
    """

    features: pd.DataFrame
    descriptors: dict[str, dict[str, str | None]]
    patients: dict[str, str]
    runs: list[str]
    skipped: list[str]
    source: Source


def readout_features(
    runs: Sequence[str | Path],
    root: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    subset: str = "test",
) -> Readout:
    """Predict ``h_tirads`` of each run's checkpoint on its own held-out ``subset`` images and de-standardise it.

    Each element of ``runs`` is anything :func:`rlar.runs.find_runs` accepts (a run folder, ``rlar train --fold
    all``'s folder, a grid arm or seed folder). The images are prepared exactly as in training (the run's own
    source, options and stored preprocessing, through :class:`rlar.data.dataset.ThyroidDataset`, as ``rlar
    evaluate`` does for a run's test images), with the run's prediction section's flip TTA; ``root`` replaces
    the run's data root (the same database at another path). The checkpoint's fold and the run's
    ``splits.json`` name the images.

    Raises:
        DataError: no run under a path, a checkpoint without a radiomics standardiser (a model trained without
            guidance has no read-out), or a missing split file.
    """
    import torch

    from rlar.data.dataset import ThyroidDataset, collate
    from rlar.data.sources import open_source
    from rlar.data.splits import load_splits
    from rlar.errors import DataError
    from rlar.inference.loading import load_trained_model
    from rlar.models.predict import predict_batch
    from rlar.radiomics.spec import FEATURE_NAMES
    from rlar.radiomics.standardise import Standardiser
    from rlar.runs import SPLITS_FILE, chosen_checkpoint, find_runs, run_dir_of

    files: list[Path] = []
    for path in runs:
        found = find_runs(path)
        if not found:
            raise DataError(path, "no run with a checkpoint here (a run folder, fold_* folder or grid arm)")
        files.extend(chosen_checkpoint(r.path) for r in found)

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    descriptors: dict[str, dict[str, str | None]] = {}
    patients: dict[str, str] = {}
    skipped: list[str] = []
    source: Source | None = None
    for file in files:
        trained = load_trained_model(file, device=device)
        state = trained.checkpoint.get("standardiser")
        if not state:
            raise DataError(file, "checkpoint has no radiomics standardiser: the model was trained without "
                                  "guidance, so h_tirads has no feature units to read out")
        standardiser = Standardiser.from_state_dict(state)
        cfg = trained.config
        run_dir = run_dir_of(trained.path)
        split_file = run_dir / SPLITS_FILE
        if not split_file.is_file():  # a grid keeps one splits.json at its root
            candidates = [p / SPLITS_FILE for p in run_dir.parents if (p / SPLITS_FILE).is_file()]
            if not candidates:
                raise DataError(split_file, "split file not found beside the run or in a folder above it")
            split_file = candidates[0]
        folds = load_splits(split_file)
        fold = trained.checkpoint.get("fold")
        fold = cfg.data.fold if fold is None else fold
        if fold is None or not 0 <= int(fold) < len(folds):
            raise DataError(file, f"checkpoint's fold {fold} is not one of the {len(folds)} folds of {split_file}: "
                                  "cannot tell which images it never saw")
        ids = list(folds[int(fold)][subset])
        source = open_source(cfg.data.source, root if root is not None else cfg.data.root, **dict(cfg.data.options))
        dataset = ThyroidDataset(source, ids, image_size=trained.prep.image_size)
        skipped.extend(f"{s.item}: {s.reason}" for s in getattr(dataset, "skipped", []))
        info_of = {info.image_id: info for info in source.infos}
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
        with torch.inference_mode():
            for batch in loader:
                prediction = predict_batch(trained.model, batch["image"].to(device), tta=cfg.prediction.tta)
                if prediction.h_tirads is None:
                    raise DataError(file, "the network has no h_tirads output")
                h = pd.DataFrame(prediction.h_tirads.float().cpu().numpy().astype(np.float64),
                                 columns=list(FEATURE_NAMES))
                values = standardiser.inverse_transform(h).to_numpy()
                for image_id, row in zip(batch["image_id"], values, strict=True):
                    sums[image_id] = sums.get(image_id, 0.0) + row
                    counts[image_id] = counts.get(image_id, 0) + 1
                    descriptors[image_id] = dict(info_of[image_id].descriptors)
                    patients[image_id] = info_of[image_id].patient_id
    frame = pd.DataFrame.from_dict({k: sums[k] / counts[k] for k in sums}, orient="index",
                                   columns=list(FEATURE_NAMES))
    frame.index.name = "image_id"
    assert source is not None  # files is not empty
    return Readout(frame, descriptors, patients, [str(f) for f in files], skipped, source)
