"""Score a trained model (run folder or checkpoint) on images it was not trained on: what ``rlar evaluate`` does.

:func:`evaluate_trained_model` loads the model, opens the source, picks the images (the run's held-out ``test``
images of the checkpoint's fold by default, another side of the fold, or every image of the source), predicts
them and computes the metrics; :func:`write_tables`, :func:`write_overlays` and :func:`write_confusion_matrix` write
the result's files. The command (:mod:`rlar.cli.evaluate`) only parses its arguments into an
:class:`EvaluationRequest`, calls these and prints.

The model's stored preprocessing (:mod:`rlar.training.preprocessing`) is what it sees: on its own training source,
with the training options, the images are prepared exactly as in training (the numbers equal the run's test
metrics); on any other source (or other options) each image is decoded uncropped and predicted as ``rlar predict``
predicts the same file (:mod:`rlar.inference.sources`), and masks are scored at the images' own resolution. A
multiclass model is also scored low vs high risk (``binary_*`` metrics).

Errors name the command's options (``--source``, ``--fold``, ``--out``) that correspond to the request's fields.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlar.data.files import probe_folder
from rlar.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from rlar.data.dataset import ThyroidDataset
    from rlar.data.labels import LabelSpace
    from rlar.data.sources.base import Source
    from rlar.inference.loading import TrainedModel
    from rlar.prediction import PredictionOptions

#: Name of the per-image table written into the output folder (the columns of a run's ``predictions_test.csv``).
PREDICTIONS_CSV = "predictions.csv"
#: Name of the confusion-matrix figure written into the output folder.
CONFUSION_MATRIX_PNG = "confusion_matrix.png"


@dataclass(frozen=True)
class EvaluationRequest:
    """What to score, and how.

    model: run folder or checkpoint file. source/root: dataset layout and folder (None: the checkpoint's training
    source; a root needs a source). options: source options, applied over the training options when ``source`` is
    None. splits/fold/subset: which side of which fold (default: the run's ``splits.json`` and the checkpoint's
    fold). all_images: every image of the source instead. tta/postprocess: prediction options overriding the run's
    (None keeps them). mask_dir: folder for predicted masks as PNGs (None: not written). keep_masks: keep the
    predicted masks in the result's frame (for overlays).
    """

    model: str | Path
    source: str | None = None
    root: str | Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    splits: str | Path | None = None
    fold: int | None = None
    subset: str = "test"
    all_images: bool = False
    tta: bool | None = None
    postprocess: str | None = None
    batch_size: int = 16
    device: str = "auto"
    progress: bool = True
    mask_dir: Path | None = None
    keep_masks: bool = False


@dataclass
class EvaluationResult:
    """One evaluation: per-image rows, the per-image table in the run folder's format, and the metrics.

    frame: the prediction rows (with ``pred_mask`` and, off the training source, ``image``/``true_mask`` when masks
    were kept). dataset: the dataset predicted on the training source as in training, else None. checkpoint: the
    checkpoint file scored. images: a description of the images scored.
    """

    frame: pd.DataFrame
    table: pd.DataFrame
    metrics: dict[str, Any]
    class_names: list[str] | None
    dataset: ThyroidDataset | None
    checkpoint: Path
    images: str

    @property
    def has_masks(self) -> bool:
        """Whether the frame holds predicted masks (kept for overlays) to draw."""
        return "pred_mask" in self.frame.columns


@dataclass(frozen=True)
class _SourcePlan:
    """Which source to open with which options, and whether it is the training source as trained on."""

    name: str
    root: str | Path | None
    options: dict[str, Any]
    same_source: bool  # the training source (same layout, same folder): its splits apply
    as_trained: bool  # ... with the training options too: images prepared exactly as in training


def check_out_folder(out: str | Path | None) -> Path | None:
    """Create ``--out`` and prove a file can be written in it (:func:`rlar.data.files.probe_folder`), or None."""
    if out is None:
        return None
    try:
        return probe_folder(out, "--out")
    except ConfigError as err:
        raise ConfigError("--out", f"output folder is not writable; {err.reason}") from None


def same_root(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two dataset roots name one folder (resolved: ``./x``, ``x/`` and a symlink to it are the same)."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return str(a) == str(b)


def source_options_for_model(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A source's options with its own scan-area crop turned off: the model's preprocessing crops (or not)."""
    from rlar.data.sources import get_source_class

    fields = get_source_class(name).options_model().model_fields
    return {**options, "crop": False} if "crop" in fields else dict(options)


def _plan_source(request: EvaluationRequest, cfg: Any) -> _SourcePlan:
    """The source to score: the training source and options unless the request names another source."""
    name = request.source or cfg.data.source
    if request.source is None:
        root, options = cfg.data.root, dict(cfg.data.options)
    else:
        root, options = request.root, {}
    options.update(request.options)
    same_source = name == cfg.data.source and same_root(root, cfg.data.root)
    # The dataset path reproduces training's own test evaluation; any other source or option set gets the
    # model's preprocessing applied to the uncropped pixels (what `rlar predict` does with the same files).
    as_trained = same_source and options == dict(cfg.data.options)
    if not as_trained:
        options = source_options_for_model(name, options)
    return _SourcePlan(name=name, root=root, options=options, same_source=same_source, as_trained=as_trained)


def _scored_label_space(trained: LabelSpace, source: Source, name: str) -> LabelSpace | None:
    """The model's label space when ``source`` is labelled on its scale; else None (with a warning): the
    classification metrics are then skipped."""
    from rlar.training.run import label_space_for

    here = label_space_for(source, trained.task)
    if here.scale != trained.scale:
        warnings.warn(f"the checkpoint predicts {trained.scale}-scale TI-RADS but '{name}' is labelled on the "
                      f"{here.scale} scale; classification metrics are skipped", stacklevel=1)
        return None
    return trained


def select_images(request: EvaluationRequest, checkpoint: Path, ckpt: dict[str, Any], cfg: Any, source: Any,
                  same_source: bool) -> tuple[list[str] | None, str]:
    """The image ids to score (None: all) and a description of them."""
    from rlar.data.splits import check_splits, load_splits
    from rlar.runs import SPLITS_FILE, run_dir_of

    if request.all_images:
        if same_source:
            warnings.warn("--all-images on the training source: the scores include the images the model was "
                          "trained and selected on, so they overstate how it does on new images", stacklevel=1)
        return None, f"all {len(source.infos)} images of '{source.name}'"
    if not same_source:
        raise ConfigError("--source", "the run's splits name images of its training source; to score another "
                                      "source, add --all-images (none of its images were used in training)")
    splits = Path(request.splits) if request.splits is not None else run_dir_of(checkpoint) / SPLITS_FILE
    if not splits.is_file():
        raise DataError(splits, "split file not found; give --splits, or --all-images to score every image "
                                "(training images included)")
    folds = load_splits(splits)
    check_splits(folds, source.infos, where=str(splits))
    fold = request.fold if request.fold is not None else ckpt.get("fold", cfg.data.fold)
    if fold is None or not 0 <= int(fold) < len(folds):
        raise ConfigError("--fold", f"fold {fold} does not exist in {splits} ({len(folds)} folds)")
    ids = list(folds[int(fold)][request.subset])
    return ids, f"fold {fold} '{request.subset}' images of {splits} ({len(ids)})"


def _predict_images(request: EvaluationRequest, trained_model: TrainedModel, source: Source,
                    image_ids: list[str] | None, label_space: LabelSpace | None, prediction: PredictionOptions,
                    device: Any, as_trained: bool) -> tuple[pd.DataFrame, list[Any], int, ThyroidDataset | None]:
    """Predict the images: through a dataset as in training (``as_trained``), else as ``rlar predict`` does.

    Returns the prediction rows, the skipped (undecodable) items, the number of images scored and the dataset
    (None off the training path)."""
    import torch

    from rlar.data.dataset import ThyroidDataset
    from rlar.evaluation.evaluate import predict
    from rlar.inference.sources import predict_source

    if as_trained:
        dataset = ThyroidDataset(source, image_ids, image_size=trained_model.prep.image_size, label_space=label_space)
        skipped = list(getattr(dataset, "skipped", []))
        with torch.no_grad():
            frame = predict(trained_model.model, dataset, batch_size=request.batch_size, device=device,
                            progress=request.progress, output_dir=request.mask_dir, keep_masks=request.keep_masks,
                            options=prediction)
        return frame, skipped, len(dataset), dataset
    frame, skipped = predict_source([trained_model], source, image_ids, label_space, prediction, device,
                                    batch_size=request.batch_size, progress=request.progress,
                                    mask_dir=request.mask_dir, keep_masks=request.keep_masks)
    return frame, skipped, len(frame), None


def binary_risk_metrics(table: Any, label_space: Any) -> dict[str, float]:
    """Low- vs high-risk metrics of a multiclass model's per-image table (the high-risk probability is the sum over
    the scale's high-risk levels, as in ``rlar report``'s binary tables), as ``binary_<metric>``; {} for a binary
    model (its own metrics already are these), an unknown scale or no labelled image."""
    from rlar.reporting.tables import CLS_METRICS, frame_metrics

    if label_space is None or label_space.task != "multiclass":
        return {}
    scores = frame_metrics(table, "binary")  # NaN for every metric when undefined
    if all(math.isnan(scores[m]) for m in CLS_METRICS):
        return {}
    return {f"binary_{m}": scores[m] for m in CLS_METRICS}


def _score(frame: pd.DataFrame, dataset: ThyroidDataset | None, trained: LabelSpace,
           label_space: LabelSpace | None) -> tuple[dict[str, Any], pd.DataFrame, list[str] | None]:
    """The metrics of the prediction rows (classification only when the labels are on the model's scale), the
    per-image table in the run folder's format (``predictions_test.csv``) and the class names."""
    from rlar.evaluation.evaluate import class_names_of, metrics_from_predictions, predictions_table

    class_names = None
    if "pred_class" in frame.columns:
        n_classes = sum(c.startswith("prob_") for c in frame.columns)
        class_names = (class_names_of(dataset, n_classes) if dataset is not None
                       else list(trained.class_names))
    scored = frame if label_space is not None else frame.assign(label=-1)
    metrics: dict[str, Any] = metrics_from_predictions(scored, class_names)
    table = predictions_table(scored.drop(columns=[c for c in ("image", "true_mask") if c in scored.columns]),
                              class_names)
    metrics.update(binary_risk_metrics(table, label_space))
    return metrics, table, class_names


def evaluate_trained_model(request: EvaluationRequest, note: Callable[[str], None] | None = None) -> EvaluationResult:
    """Load the model, open the source, select and predict the images, and score them.

    ``note`` receives the lines a user should see as the work goes (which preprocessing is applied off the
    training path, which images are scored, every skipped image); None drops them. Warns (UserWarning) when the
    scores include training images or the source is labelled on another scale. Raises ConfigError / DataError for
    a bad request, model or source.
    """
    from rlar.data.sources import open_source
    from rlar.environment import resolve_device
    from rlar.inference.loading import load_trained_model

    say = note or (lambda _line: None)
    device = resolve_device(request.device)
    trained_model = load_trained_model(request.model, device=device)
    cfg = trained_model.config
    plan = _plan_source(request, cfg)
    if not plan.as_trained:
        say(f"preprocessing: the model's own ({trained_model.prep.describe()}) is applied to the images of "
            f"'{plan.name}' instead of the source's; masks are scored at each image's own resolution")
    source = open_source(plan.name, plan.root, **plan.options)
    label_space = _scored_label_space(trained_model.label_space, source, plan.name)

    image_ids, described = select_images(request, trained_model.path, trained_model.checkpoint, cfg, source,
                                         plan.same_source)
    say(f"scoring {described}")
    changes = {key: value for key, value in (("tta", request.tta), ("mask_postprocess", request.postprocess))
               if value is not None}
    prediction = cfg.prediction.model_copy(update=changes)
    frame, skipped, n_images, dataset = _predict_images(request, trained_model, source, image_ids, label_space,
                                                        prediction, device, plan.as_trained)
    for skip in skipped:
        say(f"skipped {skip.item}: {skip.reason}")

    metrics, table, class_names = _score(frame, dataset, trained_model.label_space, label_space)
    metrics["checkpoint"] = str(trained_model.path)
    metrics["prediction"] = prediction.model_dump()
    metrics["preprocessing"] = trained_model.prep.to_dict()
    metrics["preprocessing_applied"] = "as in training" if plan.as_trained else "the model's, on uncropped source images"
    metrics["source"] = plan.name
    metrics["images"] = described
    metrics["n_images"] = n_images
    return EvaluationResult(frame=frame, table=table, metrics=metrics, class_names=class_names, dataset=dataset,
                            checkpoint=trained_model.path, images=described)


def write_tables(result: EvaluationResult, out: Path) -> tuple[Path, Path]:
    """Write ``predictions.csv`` and ``metrics.json`` (strict JSON, atomically) into ``out``; return their paths."""
    from rlar.runs import METRICS_FILE
    from rlar.training.run import to_jsonable, write_text

    predictions, metrics = out / PREDICTIONS_CSV, out / METRICS_FILE
    result.table.to_csv(predictions, index=False)
    write_text(metrics, json.dumps(to_jsonable(result.metrics), indent=1))
    return predictions, metrics


def write_overlays(frame: Any, dataset: Any, folder: Path) -> int:
    """Predicted (yellow) and true (cyan) contours on each image, drawn by ``rlar predict``'s overlay function:
    at the network's input resolution (``dataset`` given) or the image's own (rows holding ``image`` and
    ``true_mask``, from :func:`rlar.inference.sources.predict_source`). Returns the number of images written."""
    import numpy as np

    from rlar.inference.outputs import overlay, png_bytes, safe_stem, write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    position = {image_id: i for i, image_id in enumerate(dataset.image_ids)} if dataset is not None else {}
    written = 0
    for _, row in frame.iterrows():
        if dataset is not None:
            item = dataset[position[row["image_id"]]]
            image = item["image"][0].numpy()
            truth = item["mask"][0].numpy() > 0.5 if item["has_mask"] else None
        else:
            image, truth = row["image"], row["true_mask"]
        pred = np.asarray(row["pred_mask"]) if "pred_mask" in row and row["pred_mask"] is not None else None
        write_bytes(folder / f"{safe_stem(row['image_id'])}.png", png_bytes(overlay(image, pred, truth)))
        written += 1
    return written


def write_confusion_matrix(result: EvaluationResult, path: Path) -> Path | None:
    """Draw the result's confusion matrix (:func:`rlar.reporting.figures.confusion_matrix_figure`) to ``path``,
    titled with the checkpoint and the images; None (nothing written) without a classifier or a labelled image."""
    from rlar.reporting.figures import confusion_matrix_figure

    if "confusion_matrix" not in result.metrics or result.class_names is None:
        return None
    fig = confusion_matrix_figure(result.metrics["confusion_matrix"], result.class_names,
                                  f"{result.checkpoint.name}: {result.images}")
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise DataError(path, f"cannot write ({type(exc).__name__}: {exc})") from None
    return path


__all__ = [
    "EvaluationRequest",
    "EvaluationResult",
    "binary_risk_metrics",
    "check_out_folder",
    "evaluate_trained_model",
    "same_root",
    "select_images",
    "source_options_for_model",
    "write_confusion_matrix",
    "write_overlays",
    "write_tables",
]
