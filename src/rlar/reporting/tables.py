"""The paper's Table 1 layout from a grid folder: one row per arm, mean +/- std over runs, and paired comparisons.

Metric conventions (Metrics Reloaded, Maier-Hein et al., Nat Methods 2024; the per-image values come from
:mod:`rlar.evaluation.metrics`):

- Segmentation: Dice, IoU and HD95 (pixels of the network grid) per image, averaged over the images of a run that
  have a ground-truth nodule (per-case mean, not a pooled Dice). An empty prediction on an image with a nodule
  scores Dice 0, IoU 0 and HD95 = the image diagonal; images without a ground-truth nodule are left out.
- Classification over the labelled images of a run: macro-F1, macro precision and recall, AUROC (macro
  one-vs-rest over the classes present), balanced accuracy, quadratic weighted kappa (QWK) and top-label ECE (15
  bins), in two label spaces: ``levels`` (the source's full set of TI-RADS levels) and ``binary`` (low vs high risk,
  :data:`rlar.data.labels.HIGH_RISK_LEVELS`; a multiclass model's high-risk probability is the sum of its high-risk
  levels' probabilities).
- A cell is mean +/- sample std (ddof 1) over the runs (folds x seeds) of the arm; "n/a" where undefined.

Comparisons (a - b) on the metrics of :data:`COMPARED_METRICS` (the tasks' headline metrics, ``rlar.tasks``):
the difference of the metric over the test images pooled across folds and seeds, its patient-level paired bootstrap
95 % CI, a Wilcoxon signed-rank p over per-patient scores, the Nadeau-Bengio corrected resampled t-test over the
per-run differences, and Holm adjustment of each test family across the comparisons of one table. Binary tables
also compare the binary AUROC (:data:`BINARY_EXTRA_METRICS`: mean over runs of each run's AUROC; no Wilcoxon p; a
Holm family of its own). Every comparison also gets the hierarchical interval (seeds, then patients) and the
minimum detectable effect of :mod:`rlar.reporting.hierarchical`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rlar.data.labels import HIGH_RISK_LEVELS, SCALE_LEVELS, UNKNOWN
from rlar.experiments.arms import TableSpec
from rlar.reporting.collect import Evaluation, GridData, RunRecord
from rlar.reporting.environments import mixing_note
from rlar.reporting.hierarchical import HierarchicalResult, compare_hierarchical, weighted_auroc
from rlar.reporting.stats import (
    BOOTSTRAP_SEED,
    N_BOOTSTRAP,
    cluster_bootstrap_ci,
    corrected_resampled_ttest,
    holm,
    wilcoxon_p,
)
from rlar.tasks import CLS, SEG, selection_headlines

#: The table columns: the metrics the task table lists for segmentation and for the TI-RADS category.
SEG_METRICS: tuple[str, ...] = SEG.metrics
CLS_METRICS: tuple[str, ...] = CLS.metrics
METRICS: tuple[str, ...] = SEG_METRICS + CLS_METRICS
HEADERS: dict[str, str] = {
    "dice": "Dice", "iou": "IoU", "hd95_px": "HD95 px", "macro_f1": "macro-F1", "macro_precision": "precision",
    "macro_recall": "recall", "auroc": "AUROC", "balanced_accuracy": "bal. acc.", "qwk": "QWK", "ece": "ECE",
}
#: Lower is better for these (the others: higher is better).
LOWER_IS_BETTER = frozenset({"hd95_px", "ece"})
#: The tested metrics: the headline metric of each task that selects checkpoints, from the task table.
COMPARED_METRICS: tuple[str, ...] = selection_headlines()
SPACES: tuple[str, ...] = ("levels", "binary")
#: Compared too, in the binary label space only, as their own Holm family: the ranking metric of the power analysis.
BINARY_EXTRA_METRICS: tuple[str, ...] = ("auroc",)
DIGITS: dict[str, int] = {"hd95_px": 2}


# ------------------------------------------------------------------------------------------ per-frame metrics


def class_names(frame: pd.DataFrame) -> list[str]:
    return [c[len("prob_"):] for c in frame.columns if c.startswith("prob_")]


def scale_of(names: Sequence[str]) -> str | None:
    """The TI-RADS scale whose levels are exactly ``names`` (a multiclass model's classes), else None."""
    for scale, levels in SCALE_LEVELS.items():
        if tuple(names) == levels:
            return scale
    return None


def classification_inputs(frame: pd.DataFrame, space: str) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """(probs (N, C), labels (N,), class names) of a predictions frame in a label space; None when undefined.

    ``levels`` needs a multiclass model on the labels' own scale; ``binary`` works for both kinds of model.
    """
    names = class_names(frame)
    if not names:
        return None
    probs = frame[[f"prob_{n}" for n in names]].to_numpy(dtype=np.float64)
    is_binary_model = names == ["low_risk", "high_risk"]
    if space == "levels":
        if is_binary_model or "label" not in frame.columns:
            return None
        return probs, frame["label"].to_numpy(dtype=np.int64), names
    if is_binary_model:
        high = probs[:, 1]
        labels = frame["label"].to_numpy(dtype=np.int64)
    else:
        scale = scale_of(names)
        if scale is None:
            return None
        high = probs[:, [n in HIGH_RISK_LEVELS[scale] for n in names]].sum(axis=1)
        if "label_binary" in frame.columns:
            labels = frame["label_binary"].to_numpy(dtype=np.int64)
        else:
            # An unlabelled image is "" (read_predictions) or NaN (a plain pd.read_csv): unknown, never low risk.
            labels = np.array([int(n in HIGH_RISK_LEVELS[scale]) if isinstance(n, str) and n else UNKNOWN
                               for n in frame["label_name"]], dtype=np.int64)
    return np.stack([1.0 - high, high], axis=1), labels, ["low_risk", "high_risk"]


def _seg_rows(frame: pd.DataFrame) -> pd.DataFrame:
    if "dice" not in frame.columns:
        return frame.iloc[0:0]
    has = frame["has_mask"].astype(bool) if "has_mask" in frame.columns else True
    return frame[has & np.isfinite(frame["dice"].to_numpy(dtype=np.float64))]


def frame_metrics(frame: pd.DataFrame, space: str) -> dict[str, float]:
    """The table's metrics of one predictions frame (one run) in label space ``space`` (NaN where undefined)."""
    from rlar.evaluation.metrics import classification_metrics

    out = dict.fromkeys(METRICS, math.nan)
    seg = _seg_rows(frame)
    if len(seg):
        for m in SEG_METRICS:
            out[m] = float(seg[m].to_numpy(dtype=np.float64).mean())
    inputs = classification_inputs(frame, space)
    if inputs is not None:
        probs, labels, names = inputs
        if (labels >= 0).any():
            scores = classification_metrics(probs, labels, names)
            out.update({m: float(scores[m]) for m in CLS_METRICS})
    return out


def run_metrics(run: RunRecord, key: str, space: str) -> dict[str, float]:
    """:func:`frame_metrics` of one run's ``key`` predictions, computed once per run."""
    cached = run.metrics_cache.get((key, space))
    if cached is None:
        cached = run.metrics_cache[(key, space)] = frame_metrics(run.frames[key], space)
    return cached


# ---------------------------------------------------------------------------------------------- comparisons


def _macro_f1(labels: np.ndarray, preds: np.ndarray, k: int) -> float:
    """Macro-F1 over the classes occurring in truth or prediction (the convention of rlar.evaluation.metrics),
    computed from a bincount confusion matrix: fast enough to run inside a bootstrap."""
    if labels.size == 0:
        return math.nan
    cm = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    occurring = (support + predicted) > 0
    f1 = np.where(occurring, 2 * tp / np.maximum(support + predicted, 1e-12), 0.0)
    return float(f1[occurring].mean())


@dataclass(frozen=True)
class Paired:
    """Per-image rows of two arms on the same (seed, image) pairs, grouped by patient."""

    a: pd.DataFrame
    b: pd.DataFrame
    patient_index: np.ndarray  # (rows,) patient number 0..P-1
    n_patients: int


def pair_frames(runs_a: list[RunRecord], runs_b: list[RunRecord], key: str) -> Paired | None:
    """Rows of both arms for the (seed, image_id) pairs both have, in a fixed order; None when nothing pairs."""
    def stack(runs: list[RunRecord]) -> pd.DataFrame:
        parts = [r.frames[key].assign(_seed=r.seed, _fold=r.fold) for r in runs if key in r.frames]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    a, b = stack(runs_a), stack(runs_b)
    if a.empty or b.empty:
        return None
    keys = ["_seed", "image_id"]
    common = a[keys].merge(b[keys], on=keys).drop_duplicates().sort_values(keys, kind="stable")
    if common.empty:
        return None
    a = common.merge(a, on=keys, how="left").reset_index(drop=True)
    b = common.merge(b, on=keys, how="left").reset_index(drop=True)
    patients = a["patient_id"].astype(str).to_numpy()
    uniq, index = np.unique(patients, return_inverse=True)
    return Paired(a, b, index.astype(np.int64), len(uniq))


def _rows_of(patient_index: np.ndarray, n_patients: int) -> list[np.ndarray]:
    order = np.argsort(patient_index, kind="stable")
    bounds = np.searchsorted(patient_index[order], np.arange(n_patients + 1))
    return [order[bounds[p]:bounds[p + 1]] for p in range(n_patients)]


def _per_patient(values: np.ndarray, patient_index: np.ndarray, n: int) -> np.ndarray:
    finite = np.isfinite(values)
    sums = np.bincount(patient_index[finite], weights=values[finite], minlength=n)
    counts = np.bincount(patient_index[finite], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def paired_statistic(paired: Paired, metric: str, space: str
                     ) -> tuple[Callable[[np.ndarray], float], np.ndarray, np.ndarray] | None:
    """(statistic over drawn patients -> a - b, per-patient scores of a, of b) for the Wilcoxon test; None when
    the metric is undefined for these frames.

    Segmentation metrics: per-image mean over the drawn patients' images; per-patient score = mean over the
    patient's images. Classification metrics (macro-F1): recomputed on the drawn patients' labelled images;
    per-patient score = mean probability given to the true class (macro-F1 has no per-patient value).
    """
    n, pidx = paired.n_patients, paired.patient_index
    if metric in SEG_METRICS:
        if metric not in paired.a.columns or metric not in paired.b.columns:
            return None
        va, vb = paired.a[metric].to_numpy(dtype=np.float64), paired.b[metric].to_numpy(dtype=np.float64)
        ok = np.isfinite(va) & np.isfinite(vb)
        if "has_mask" in paired.a.columns:
            ok &= paired.a["has_mask"].astype(bool).to_numpy()
        if not ok.any():
            return None
        diff = np.where(ok, va - vb, 0.0)
        sums = np.bincount(pidx, weights=diff, minlength=n)
        counts = np.bincount(pidx, weights=ok.astype(np.float64), minlength=n)

        def seg_stat(groups: np.ndarray) -> float:
            total = counts[groups].sum()
            return float(sums[groups].sum() / total) if total > 0 else math.nan

        return seg_stat, _per_patient(np.where(ok, va, np.nan), pidx, n), _per_patient(np.where(ok, vb, np.nan), pidx, n)
    if metric != "macro_f1":
        return None
    inputs = _paired_class_inputs(paired, space)
    if inputs is None:
        return None
    pa, pb, labels, names, known = inputs
    k = len(names)
    pred_a, pred_b = pa.argmax(axis=1), pb.argmax(axis=1)
    rows = _rows_of(pidx, n)
    rows = [r[known[r]] for r in rows]

    def cls_stat(groups: np.ndarray) -> float:
        chosen = np.concatenate([rows[g] for g in groups])
        y = labels[chosen]
        return _macro_f1(y, pred_a[chosen], k) - _macro_f1(y, pred_b[chosen], k)

    safe = np.where(known, labels, 0)
    true_a = np.where(known, pa[np.arange(len(labels)), safe], np.nan)
    true_b = np.where(known, pb[np.arange(len(labels)), safe], np.nan)
    return cls_stat, _per_patient(true_a, pidx, n), _per_patient(true_b, pidx, n)


def _paired_class_inputs(paired: Paired, space: str
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray] | None:
    """(probabilities of a, of b, labels, class names, labelled mask) of a paired frame in ``space``; None when
    either side has no classifier output or no image is labelled."""
    ia, ib = classification_inputs(paired.a, space), classification_inputs(paired.b, space)
    if ia is None or ib is None:
        return None
    (pa, labels, names), (pb, _, _) = ia, ib
    known = labels >= 0
    if not known.any():
        return None
    return pa, pb, labels, names, known


def paired_auroc_statistic(paired: Paired, space: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """Vectorized statistic over drawn patients (B, P) -> (B,) AUROC(a) - AUROC(b), each the mean over the paired
    runs (seed, fold) of the run's binary AUROC on the drawn patients' labelled images (a run whose draw has no
    positive or no negative image is left out of both means); None when the binary AUROC is undefined."""
    if space != "binary":
        return None
    inputs = _paired_class_inputs(paired, space)
    if inputs is None:
        return None
    pa, pb, labels, _, known = inputs
    runs = paired.a["_seed"].astype(str) + "/" + paired.a["_fold"].astype(str)
    groups = [np.flatnonzero(known & (runs == r).to_numpy()) for r in sorted(runs.unique())]
    groups = [g for g in groups if g.size]
    n = paired.n_patients

    def statistic(draws: np.ndarray) -> np.ndarray:
        draws = np.atleast_2d(draws)
        counts = np.zeros((draws.shape[0], n))
        np.add.at(counts, (np.repeat(np.arange(draws.shape[0]), draws.shape[1]), draws.ravel()), 1.0)
        sums = np.zeros((draws.shape[0], 2))
        valid = np.zeros(draws.shape[0])
        for rows in groups:
            w = counts[:, paired.patient_index[rows]]
            y = labels[rows]
            auc_a, auc_b = weighted_auroc(pa[rows, 1], y, w), weighted_auroc(pb[rows, 1], y, w)
            ok = np.isfinite(auc_a) & np.isfinite(auc_b)
            sums[:, 0] += np.where(ok, auc_a, 0.0)
            sums[:, 1] += np.where(ok, auc_b, 0.0)
            valid += ok
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(valid > 0, (sums[:, 0] - sums[:, 1]) / np.maximum(valid, 1), np.nan)

    return statistic


@dataclass
class Comparison:
    """One tested difference a - b of one metric."""

    a: str
    b: str
    metric: str
    estimate: float
    low: float
    high: float
    n_patients: int
    p_wilcoxon: float
    n_runs: int
    mean_run_difference: float
    t_nb: float
    p_nb: float
    p_wilcoxon_holm: float = math.nan
    p_nb_holm: float = math.nan
    #: The interval that includes the variation between trainings, and the MDE (rlar.reporting.hierarchical).
    hierarchical: HierarchicalResult | None = None


def compare(grid: GridData, a: str, b: str, metric: str, evaluation: Evaluation, space: str,
            n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> Comparison | None:
    """The paired comparison of arms ``a`` and ``b`` on ``metric`` (see the module docstring); None if undefined."""
    runs_a, runs_b = grid.runs_of(a), grid.runs_of(b)
    paired = pair_frames(runs_a, runs_b, evaluation.key)
    if paired is None:
        return None
    if metric in BINARY_EXTRA_METRICS:
        auroc = paired_auroc_statistic(paired, space)
        if auroc is None:
            return None
        ci = cluster_bootstrap_ci(auroc, paired.n_patients, n_resamples=n_resamples, seed=seed, vectorized=True)
        p_wilcoxon = math.nan  # AUROC has no per-patient value
    else:
        parts = paired_statistic(paired, metric, space)
        if parts is None:
            return None
        statistic, score_a, score_b = parts
        ci = cluster_bootstrap_ci(statistic, paired.n_patients, n_resamples=n_resamples, seed=seed)
        p_wilcoxon = wilcoxon_p(score_a, score_b)
    by_run_b = {(r.seed, r.fold): r for r in runs_b if evaluation.key in r.frames}
    diffs, n_train, n_test = [], [], []
    for run in runs_a:
        other = by_run_b.get((run.seed, run.fold))
        if other is None or evaluation.key not in run.frames:
            continue
        diffs.append(run_metrics(run, evaluation.key, space)[metric] - run_metrics(other, evaluation.key, space)[metric])
        if run.n_train and run.n_test:
            n_train.append(run.n_train)
            n_test.append(run.n_test)
    if n_train:
        t = corrected_resampled_ttest(diffs, float(np.mean(n_train)), float(np.mean(n_test)))
    else:
        t = corrected_resampled_ttest([], 1, 1)
    hierarchical = compare_hierarchical(runs_a, runs_b, evaluation.key, metric, space, n_resamples, seed)
    return Comparison(a, b, metric, ci.estimate, ci.low, ci.high, paired.n_patients, p_wilcoxon,
                      len(diffs), t.mean, t.t, t.p, hierarchical=hierarchical)


# ------------------------------------------------------------------------------------------------- tables


@dataclass
class Cell:
    mean: float
    std: float
    n: int


@dataclass
class Row:
    arm: str
    n_runs: int
    cells: dict[str, Cell]


@dataclass
class Table:
    """One rendered table: a :class:`TableSpec` on one evaluation in one label space."""

    spec: TableSpec
    evaluation: Evaluation
    space: str
    rows: list[Row]
    comparisons: list[Comparison] = field(default_factory=list)
    #: Environment name of each run behind the rows (rlar.reporting.environments), for the caption.
    environments: tuple[str, ...] = ()
    n_resamples: int = N_BOOTSTRAP
    seed: int = BOOTSTRAP_SEED

    @property
    def slug(self) -> str:
        return f"{self.spec.name}__{self.evaluation.key}__{self.space}"


def _cell(values: list[float]) -> Cell:
    arr = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    mean = float(arr.mean()) if arr.size else math.nan
    std = float(arr.std(ddof=1)) if arr.size >= 2 else math.nan
    return Cell(mean, std, int(arr.size))


def build_table(grid: GridData, spec: TableSpec, evaluation: Evaluation, space: str,
                n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> Table | None:
    """Rows (arms with at least one run on this evaluation) and Holm-adjusted comparisons; None if no row, or if the
    table is made for comparisons and none of them has runs on both sides yet (an ablation whose arms have not
    run: its reference alone is already in the main table)."""
    rows = []
    environments: list[str] = []
    for arm in spec.arms:
        runs = [r for r in grid.runs_of(arm) if evaluation.key in r.frames]
        if not runs:
            continue
        environments += [r.environment_name for r in runs]
        per_run = [run_metrics(r, evaluation.key, space) for r in runs]
        rows.append(Row(arm, len(runs), {m: _cell([x[m] for x in per_run]) for m in METRICS}))
    if not rows:
        return None
    present = {r.arm for r in rows}
    if spec.comparisons and not any(a in present and b in present for a, b in spec.comparisons):
        return None
    if space == "levels" and all(not math.isfinite(r.cells["macro_f1"].mean) for r in rows) and \
            all(not math.isfinite(r.cells["dice"].mean) for r in rows):
        return None
    table = Table(spec, evaluation, space, rows, environments=tuple(environments), n_resamples=n_resamples, seed=seed)
    for a, b in spec.comparisons:
        if a not in present or b not in present:
            continue
        for metric in compared_metrics(space):
            result = compare(grid, a, b, metric, evaluation, space, n_resamples, seed)
            if result is not None:
                table.comparisons.append(result)
    # Holm families: the tasks' headline metrics, and (binary space) the AUROC comparisons on their own.
    for family in (COMPARED_METRICS, BINARY_EXTRA_METRICS):
        members = [c for c in table.comparisons if c.metric in family]
        w = holm([c.p_wilcoxon for c in members])
        t = holm([c.p_nb for c in members])
        for c, pw, pt in zip(members, w, t):
            c.p_wilcoxon_holm, c.p_nb_holm = float(pw), float(pt)
    return table


def compared_metrics(space: str) -> tuple[str, ...]:
    """The metrics a table of label space ``space`` compares: the headline metrics, plus AUROC when binary."""
    return COMPARED_METRICS + (BINARY_EXTRA_METRICS if space == "binary" else ())


# --------------------------------------------------------------------------------------------- formatting


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_cell(cell: Cell, metric: str) -> str:
    d = DIGITS.get(metric, 3)
    if not math.isfinite(cell.mean):
        return "n/a"
    return f"{cell.mean:.{d}f} ± {fmt(cell.std, d)}"


def caption(table: Table) -> str:
    """What the table's numbers are, and how the comparisons were tested (always printed with the table)."""
    runs = max((r.n_runs for r in table.rows), default=0)
    space = ("full set of TI-RADS levels" if table.space == "levels"
             else "binary low vs high risk (high-risk probability = sum over high-risk levels)")
    text = (f"{table.spec.title}. Evaluation: {table.evaluation.title}; label space: {space}. "
            f"Cells: mean ± sample std over up to {runs} runs (folds x seeds) of each row. "
            "Dice/IoU/HD95 (px): per-image mean over images with a ground-truth nodule; an empty prediction scores "
            "Dice 0, IoU 0, HD95 = image diagonal; images without a nodule are excluded.")
    if table.comparisons:
        m = sum(c.metric in COMPARED_METRICS for c in table.comparisons)
        text += (f" Comparisons (a - b) on {', '.join(COMPARED_METRICS)}: difference on the test images pooled over "
                 f"folds and seeds with a paired patient-level percentile bootstrap 95% CI ({table.n_resamples} "
                 f"resamples of patients, seed {table.seed}); Wilcoxon signed-rank p over per-patient scores (Dice: "
                 "per-patient mean; macro-F1: per-patient mean probability of the true class); NB p: Nadeau-Bengio "
                 "corrected resampled t-test over the per-run differences (variance x (1/J + n_test/n_train), "
                 f"df = J - 1). Holm correction across the {m} comparisons of this table, separately for each test "
                 "(columns 'Holm'). The bootstrap CI and Wilcoxon p treat each trained model as fixed, so they leave "
                 "out the variation between trainings of one config (seed, machine); NB p, over runs, includes it.")
    if table.comparisons:
        text += " " + hierarchical_caption(table)
    note = mixing_note(table.environments)
    return f"{text} {note}" if note else text


def hierarchical_caption(table: Table) -> str:
    """What the columns '95% CI, seeds + patients', 'MDE 80%' and 'seeds' are, and where one seed limits them."""
    results = [c.hierarchical for c in table.comparisons if c.hierarchical is not None]
    extra = [c for c in table.comparisons if c.metric in BINARY_EXTRA_METRICS]
    text = ""
    patients = ("once for all folds (every fold's model scores this source's patients)"
                if table.evaluation.key.startswith("external") else "within each fold's test set")
    if extra:
        text += (f"AUROC rows (binary AUROC of the high-risk probability, the mean over runs of each run's AUROC): "
                 "bootstrap CI as above, no Wilcoxon p (AUROC has no per-patient value), NB p over the per-run "
                 f"AUROC differences; Holm across the {len(extra)} AUROC comparisons, a family of their own. ")
    text += ("'95% CI, seeds + patients': hierarchical percentile bootstrap 95% CI of the difference "
             f"({table.n_resamples} resamples, seed {table.seed}): each replicate draws each arm's seeds within each "
             "fold, independently per arm (seed k of two methods is not a paired training), and patients "
             f"{patients}, the same patients for both arms; a drawn seed's deviation from the fold's seed "
             "mean is scaled so that the seed level carries the variance between trainings net of test-set noise, "
             "which the patient level already has. 'MDE 80%': the smallest difference a two-sided test at alpha 0.05 "
             "detects with 80% power under this design, (z_0.975 + z_0.8) x SE = 2.80 x SE, SE^2 = the variance "
             "between trainings of each arm's per-fold metric / its seeds (weighted over folds) + the patient-level "
             "variance of the difference (docs/experiments.md). 'seeds': seeds per fold of a / b.")
    single = [r for r in results if not r.hierarchical]
    partial = [r for r in results if not r.train_variance_estimated]
    if results and len(single) == len(results):
        text += (" One seed per arm: nothing varies between trainings to resample, so the seeds + patients CI falls "
                 "back to the patient bootstrap (within folds) and leaves out the variation between trainings; each "
                 "MDE is a lower bound (≥, patient-level variance only).")
    elif partial:
        text += (" Where an arm has one seed (seeds column), its variation between trainings is not in the interval "
                 "and the MDE is a lower bound (≥, that arm's training variance is not estimable).")
    return text


def _row_cells(row: Row) -> list[str]:
    return [row.arm, str(row.n_runs), *(fmt_cell(row.cells[m], m) for m in METRICS)]


def _hier_cells(c: Comparison) -> list[str]:
    h = c.hierarchical
    d = DIGITS.get(c.metric, 3)
    if h is None:
        return ["n/a", "n/a", "n/a"]
    mde = fmt(h.mde, d)
    if mde != "n/a" and not h.train_variance_estimated:
        mde = f"≥{mde}"
    return [f"[{fmt(h.low, d)}, {fmt(h.high, d)}]", mde, f"{h.seeds_a}/{h.seeds_b}"]


def _comparison_cells(c: Comparison) -> list[str]:
    d = DIGITS.get(c.metric, 3)
    return [f"{c.a} - {c.b}", HEADERS[c.metric], f"{c.estimate:+.{d}f}" if math.isfinite(c.estimate) else "n/a",
            f"[{fmt(c.low, d)}, {fmt(c.high, d)}]", *_hier_cells(c), str(c.n_patients), fmt_p(c.p_wilcoxon),
            fmt_p(c.p_wilcoxon_holm), str(c.n_runs), fmt_p(c.p_nb), fmt_p(c.p_nb_holm)]


ROW_HEADER = ["method", "runs", *(HEADERS[m] for m in METRICS)]
COMPARISON_HEADER = ["comparison", "metric", "difference", "95% CI", "95% CI, seeds + patients", "MDE 80%", "seeds",
                     "patients", "Wilcoxon p", "Holm", "runs", "NB p", "Holm"]
#: Columns the comparisons CSV adds after its original ones (rlar.reporting.hierarchical.HierarchicalResult).
HIERARCHICAL_CSV = ["seeds_a", "seeds_b", "hier_difference", "hier_ci_low", "hier_ci_high", "hier_se_bootstrap",
                    "var_train_a", "var_train_b", "var_train", "var_patient", "se", "mde", "mde_is_lower_bound"]


def to_markdown(table: Table) -> str:
    def md(header: list[str], lines: list[list[str]]) -> list[str]:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return out + ["| " + " | ".join(cells) + " |" for cells in lines]

    parts = [f"### {table.spec.title} — {table.evaluation.key}, {table.space}", "",
             *md(ROW_HEADER, [_row_cells(r) for r in table.rows])]
    if table.comparisons:
        parts += ["", *md(COMPARISON_HEADER, [_comparison_cells(c) for c in table.comparisons])]
    parts += ["", f"*{caption(table)}*", ""]
    return "\n".join(parts)


def to_csv(table: Table) -> tuple[str, str]:
    """(rows CSV, comparisons CSV): full precision numbers (%.6f), one column per mean/std."""
    lines = ["method,runs," + ",".join(f"{m}_mean,{m}_std,{m}_n" for m in METRICS)]
    for row in table.rows:
        values = []
        for m in METRICS:
            cell = row.cells[m]
            values += [f"{cell.mean:.6f}" if math.isfinite(cell.mean) else "",
                       f"{cell.std:.6f}" if math.isfinite(cell.std) else "", str(cell.n)]
        lines.append(",".join([row.arm, str(row.n_runs), *values]))
    comp = ["a,b,metric,difference,ci_low,ci_high,patients,p_wilcoxon,p_wilcoxon_holm,runs,mean_run_difference,"
            "t_nb,p_nb,p_nb_holm," + ",".join(HIERARCHICAL_CSV)]

    def f6(xs: list[float]) -> list[str]:
        return [f"{x:.6f}" if math.isfinite(x) else "" for x in xs]

    def g6(xs: list[float]) -> list[str]:  # variances: small numbers, 6 significant digits
        return [f"{x:.6g}" if math.isfinite(x) else "" for x in xs]

    for c in table.comparisons:
        nums = [c.estimate, c.low, c.high]
        tail = [c.p_wilcoxon, c.p_wilcoxon_holm]
        nb = [c.mean_run_difference, c.t_nb, c.p_nb, c.p_nb_holm]
        h = c.hierarchical
        hier = ([""] * len(HIERARCHICAL_CSV) if h is None else
                [str(h.seeds_a), str(h.seeds_b), *f6([h.estimate, h.low, h.high, h.se_bootstrap]),
                 *g6([h.var_train_a, h.var_train_b, h.var_train, h.var_patient]), *f6([h.se, h.mde]),
                 str(not h.train_variance_estimated).lower()])
        comp.append(",".join([c.a, c.b, c.metric, *f6(nums), str(c.n_patients), *f6(tail), str(c.n_runs), *f6(nb),
                              *hier]))
    return "\n".join(lines) + "\n", "\n".join(comp) + "\n"


def _tex(text: str) -> str:
    return (text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
            .replace("±", r"$\pm$").replace("≥", r"$\geq$").replace("#", r"\#").replace("^", r"\^{}"))


def to_latex(table: Table) -> str:
    cols = "l" + "r" * (len(ROW_HEADER) - 1)
    out = [r"\begin{table}[ht]", r"\centering", r"\scriptsize",
           rf"\caption{{{_tex(caption(table))}}}", rf"\label{{tab:{table.slug.replace('__', ':')}}}",
           rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(_tex(h) for h in ROW_HEADER) + r" \\", r"\midrule"]
    out += [" & ".join(_tex(c) for c in _row_cells(r)) + r" \\" for r in table.rows]
    out += [r"\bottomrule", r"\end{tabular}"]
    if table.comparisons:
        out += [r"\par\medskip", r"\begin{tabular}{llrllrrrrrrrr}", r"\toprule",
                " & ".join(_tex(h) for h in COMPARISON_HEADER) + r" \\", r"\midrule"]
        out += [" & ".join(_tex(x) for x in _comparison_cells(c)) + r" \\" for c in table.comparisons]
        out += [r"\bottomrule", r"\end{tabular}"]
    out += [r"\end{table}", ""]
    return "\n".join(out)


__all__ = ["BINARY_EXTRA_METRICS", "COMPARED_METRICS", "METRICS", "SPACES", "Comparison", "Table", "build_table",
           "caption", "classification_inputs", "compare", "compared_metrics", "frame_metrics", "pair_frames",
           "to_csv", "to_latex", "to_markdown"]
