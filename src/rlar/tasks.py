"""The tasks a model learns, as data: the one table that the losses, the model, the data, the strategies, the
config, the evaluation and the reports read.

A task here is one supervised loss term, one row (:class:`TaskSpec`) of :data:`TASKS`: its name is also its loss
key (``MultitaskLoss`` returns ``{"seg": .., "cls": .., "rad": ..}``) and its ``loss.weights.<name>`` config key;
the row names the :class:`~rlar.models.output.MultitaskOutput` field it reads, the batch keys that carry its
targets, which samples of a batch carry a usable target (its validity rule), which loss it is trained with, and the
metrics the evaluation reports for it. Tasks are grouped into the *task groups* a multitask strategy balances: the
radiomics guidance ``rad`` acts on the classification embedding h_tirads, so it belongs to the classification group
as in the paper.

Optional tasks are off unless a run names them in ``model.options.extra_tasks`` (the network then gets a head for
each, on the classification embedding, and the config gives each a loss weight of 1): the ACR descriptor tasks
(one per entry of :data:`rlar.acr.DESCRIPTOR_VALUES`, trained with partial labels, docs/descriptors.md).
Adding a task that reuses a loss kind is one row here (tests/test_tasks_as_rows.py adds a toy task and trains it).

This module sits at the bottom layer and imports no torch: the validity rules work on whatever tensor type the
batch holds (they only use comparison and ``&``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypedDict, get_args

from rlar.acr import DESCRIPTOR_VALUES, DESCRIPTORS

#: Length of the TI-RADS-aligned radiomics vector and of h_tirads (the names are ``rlar.radiomics.FEATURE_NAMES``).
RADIOMICS_DIM = 13

#: The kinds of loss a task can be trained with (``rlar.losses.multitask.LOSS_KINDS`` builds one of each).
LossKind = Literal["segmentation", "classification", "guidance"]
LOSS_KINDS: tuple[str, ...] = get_args(LossKind)

#: The ``model.options`` key that names the optional tasks a run trains (read by the network and the config).
EXTRA_TASKS_OPTION = "extra_tasks"
#: The output field of the optional classification heads: a dict of logits keyed by task name.
TASK_LOGITS = "task_logits"


class Batch(TypedDict, total=False):
    """A collated batch (``rlar.data.dataset.collate``); B samples, network size H x W.

    image:          (B, 1, H, W) float32, grey in [0, 1] before normalisation.
    mask:           (B, 1, H, W) float32 in {0, 1}; all zero where ``has_mask`` is False.
    has_mask:       (B,) bool, the sample has a nodule annotation.
    label:          (B,) int64 class index, -1 where the TI-RADS level is unknown.
    radiomics:      (B, RADIOMICS_DIM) float32 standardised targets; zeros where ``has_radiomics`` is False.
    has_radiomics:  (B,) bool.
    image_id, patient_id: list[str] of length B.

    Besides these, the batch holds one (B,) int64 entry per task read from a descriptor (its ``target_keys[0]``,
    :func:`descriptor_tasks`): the class index in ``TaskSpec.classes``, -1 where the reader recorded nothing.
    """

    image: Any
    mask: Any
    has_mask: Any
    label: Any
    radiomics: Any
    has_radiomics: Any
    image_id: list[str]
    patient_id: list[str]


# ---------------------------------------------------------------------------------------------- validity rules
# Module-level functions (bound with functools.partial) rather than lambdas, so a TaskSpec pickles (DataLoader
# workers copy what they are given).


def flag_rule(flag: str, batch: Mapping[str, Any]) -> Any:
    """Valid where the per-sample flag ``batch[flag]`` is set."""
    return batch[flag].bool()


def known_label_rule(key: str, batch: Mapping[str, Any]) -> Any:
    """Valid where the class index ``batch[key]`` is known (>= 0; -1 means unknown)."""
    return batch[key] >= 0


def radiomics_rule(batch: Mapping[str, Any]) -> Any:
    """Valid where radiomics targets exist and, when the batch carries it, a mask (radiomics are defined from one)."""
    valid = batch["has_radiomics"].bool()
    return valid & batch["has_mask"].bool() if "has_mask" in batch else valid


@dataclass(frozen=True)
class TaskSpec:
    """One row of the task table.

    name:        task name, loss key and ``loss.weights`` key.
    group:       the task group a multitask strategy balances it in (one of :data:`TASK_GROUPS`).
    output:      the ``MultitaskOutput`` field the loss reads (for :data:`TASK_LOGITS`, its entry ``name``).
    target_keys: batch keys holding the targets (the first is the target itself).
    loss:        the kind of loss (:data:`LOSS_KINDS`).
    validity:    ``validity(batch) -> (B,) bool``: samples that carry a usable target (labels, never gradients).
    headline:    the metric that summarises the task.
    metrics:     metric keys the evaluation reports for the task, headline first (empty for an auxiliary task);
                 the reports' tables show them.
    summary:     the few of them printed after a run (``rlar train``) and summarised over its folds.
    auxiliary:   True for a task that only shapes a representation (no prediction is reported for it).
    optional:    off unless ``model.options.extra_tasks`` names it (it then gets a head and a loss weight of 1).
    selects:     its headline is part of the model-selection score and of the reports' tested comparisons.
    classes:     the class names of an optional classification head (a fixed vocabulary, e.g. ACR words).
    descriptor:  the ``SampleInfo.descriptors`` entry the dataset reads its target from (None: not a descriptor).
    archs:       the architectures (``model.arch``) whose network produces its output.
    guided:      trained only with the radiomics guidance on (``radiomics.enabled``).
    """

    name: str
    group: str
    output: str
    target_keys: tuple[str, ...]
    loss: LossKind
    validity: Callable[[Mapping[str, Any]], Any]
    headline: str | None
    metrics: tuple[str, ...]
    summary: tuple[str, ...] = ()
    auxiliary: bool = False
    optional: bool = False
    selects: bool = True
    classes: tuple[str, ...] = ()
    descriptor: str | None = None
    archs: tuple[str, ...] = ("multitask", "classification")
    guided: bool = False
    description: str = ""

    def valid(self, batch: Mapping[str, Any]) -> Any:
        """(B,) bool: samples that carry a usable target for this task (defined by labels, never by gradients)."""
        return self.validity(batch)


#: Metrics reported for an optional classification task, as suffixes of ``<task>_`` (headline first).
AUX_CLASSIFICATION_METRICS: tuple[str, ...] = ("macro_f1", "auroc", "n")


def aux_classification_task(name: str, classes: Iterable[str], description: str, *,
                            descriptor: str | None = None, group: str = "cls") -> TaskSpec:
    """An optional classification task on the classification embedding: masked cross-entropy over the samples whose
    class is known (batch key ``name``, -1 unknown), reported as ``<name>_macro_f1``, ``<name>_auroc`` (one-vs-rest)
    and ``<name>_n`` (labelled samples). Not part of the model selection, so turning it on changes what the network
    learns but never how the checkpoint is chosen."""
    metrics = tuple(f"{name}_{suffix}" for suffix in AUX_CLASSIFICATION_METRICS)
    return TaskSpec(
        name=name, group=group, output=TASK_LOGITS, target_keys=(name,), loss="classification",
        validity=partial(known_label_rule, name), headline=metrics[0], metrics=metrics, summary=metrics[:2], optional=True,
        selects=False, classes=tuple(classes), descriptor=descriptor, description=description,
    )


def descriptor_tasks() -> tuple[TaskSpec, ...]:
    """One optional task per ACR descriptor of the canonical vocabulary (``rlar.acr.DESCRIPTOR_VALUES``),
    named like the descriptor; trained on the samples whose reader recorded it (partial labels)."""
    return tuple(
        aux_classification_task(name, DESCRIPTOR_VALUES[name], descriptor=name,
                                description=f"ACR {name.replace('_', ' ')}: cross-entropy over the samples whose "
                                            f"reader recorded it")
        for name in DESCRIPTORS
    )


SEG = TaskSpec(
    name="seg", group="seg", output="mask_logits", target_keys=("mask", "has_mask"), loss="segmentation",
    validity=partial(flag_rule, "has_mask"), headline="dice", metrics=("dice", "iou", "hd95_px"),
    summary=("dice", "iou", "hd95_px"), archs=("multitask", "segmentation"),
    description="nodule segmentation: Dice + BCE over samples with a mask",
)
CLS = TaskSpec(
    name="cls", group="cls", output="class_logits", target_keys=("label",), loss="classification",
    validity=partial(known_label_rule, "label"), headline="macro_f1",
    metrics=("macro_f1", "macro_precision", "macro_recall", "auroc", "balanced_accuracy", "qwk", "ece"),
    summary=("macro_f1", "balanced_accuracy", "auroc", "qwk"),
    description="TI-RADS category: cross-entropy over samples with a known level",
)
RAD = TaskSpec(
    name="rad", group="cls", output="h_tirads", target_keys=("radiomics", "has_radiomics", "has_mask"),
    loss="guidance", validity=radiomics_rule, headline=None, metrics=(), auxiliary=True, archs=("multitask",),
    guided=True,
    description=f"clinical guidance: MSE between h_tirads and the {RADIOMICS_DIM} standardised radiomics targets",
)

#: Every task, by name, in canonical order: the three of the paper, then the optional ones.
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (SEG, CLS, RAD, *descriptor_tasks())}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
#: The task groups a two-task strategy balances, in order (the first two are compared by every cosine).
TASK_GROUPS: tuple[str, ...] = (SEG.group, CLS.group)


def add_task(spec: TaskSpec) -> None:
    """Add a row to the table. Call it before anything else imports from ``rlar.tasks`` (what reads the table at
    import, such as the config's ``loss.weights`` keys, would not see it otherwise): the way a plug-in or a test
    adds a task without editing this file."""
    global TASK_NAMES
    if spec.name in TASKS:
        raise ValueError(f"task '{spec.name}' already exists")
    if spec.group not in TASK_GROUPS or spec.loss not in LOSS_KINDS:
        raise ValueError(f"task '{spec.name}': group must be one of {TASK_GROUPS} and loss one of {LOSS_KINDS}")
    TASKS[spec.name] = spec
    TASK_NAMES = tuple(TASKS)


def trained_tasks(arch: str, guided: bool, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The loss keys a run trains, in table order: the non-optional tasks whose row lists ``arch`` (and, for a
    guided task, only with the guidance on), plus the optional tasks in ``extra``; ValueError naming an optional
    task the architecture cannot have."""
    extra = check_extra_tasks(extra)
    unfit = [name for name in extra if arch not in TASKS[name].archs]
    if unfit:
        raise ValueError(f"task(s) {unfit} need a network of {list(TASKS[unfit[0]].archs)}, not arch '{arch}'")
    return tuple(name for name, spec in TASKS.items()
                 if (name in extra if spec.optional else arch in spec.archs and (guided or not spec.guided)))


def optional_task_names() -> tuple[str, ...]:
    """Names of the optional tasks (what ``model.options.extra_tasks`` may list)."""
    return tuple(name for name, spec in TASKS.items() if spec.optional)


def check_extra_tasks(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple in table order; ValueError naming the unknown or repeated ones and the choices."""
    names = [str(n) for n in names]
    choices = optional_task_names()
    unknown = [n for n in names if n not in choices]
    if unknown:
        raise ValueError(f"unknown optional task(s) {unknown}; choose from {list(choices)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"task(s) {repeated} listed twice")
    return tuple(n for n in choices if n in names)


def extra_tasks_of(model_options: Mapping[str, Any]) -> tuple[str, ...]:
    """The optional tasks a network's ``model.options`` turns on (table order; checked like :func:`check_extra_tasks`)."""
    return check_extra_tasks(model_options.get(EXTRA_TASKS_OPTION) or ())


def reported_metrics(names: Iterable[str] | None = None) -> tuple[str, ...]:
    """The metric keys of the tasks ``names`` (default: all), in table order: what summaries print."""
    chosen = TASK_NAMES if names is None else tuple(names)
    return tuple(m for spec in TASKS.values() if spec.name in chosen for m in spec.metrics)


def summary_metrics() -> tuple[str, ...]:
    """The metrics printed after a run and summarised over folds: every task's ``summary``, in table order."""
    return tuple(m for spec in TASKS.values() for m in spec.summary)


def selection_headlines() -> tuple[str, ...]:
    """The headline metrics that choose the checkpoint and that the reports compare (``dice``, ``macro_f1``)."""
    return tuple(spec.headline for spec in TASKS.values() if spec.headline and spec.selects)


def default_grouping(present: tuple[str, ...] | list[str] | None = None) -> dict[str, list[str]]:
    """Task group -> loss keys for the tasks in ``present`` (default: all), e.g. {"seg": ["seg"], "cls": ["cls", "rad"]}.

    Every optional task sits in its row's group, so a strategy built with the default grouping places a descriptor
    loss in the classification group; keys absent from a loss output are ignored by the strategies."""
    names = TASK_NAMES if present is None else tuple(present)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise KeyError(f"unknown task(s) {unknown}; tasks are {list(TASK_NAMES)}")
    groups: dict[str, list[str]] = {}
    for spec in TASKS.values():
        if spec.name in names:
            groups.setdefault(spec.group, []).append(spec.name)
    return groups


__all__ = ["AUX_CLASSIFICATION_METRICS", "CLS", "EXTRA_TASKS_OPTION", "LOSS_KINDS", "RAD", "RADIOMICS_DIM", "SEG",
           "TASKS", "TASK_GROUPS", "TASK_LOGITS", "TASK_NAMES", "Batch", "LossKind", "TaskSpec", "add_task",
           "aux_classification_task", "check_extra_tasks", "default_grouping", "descriptor_tasks", "extra_tasks_of",
           "known_label_rule", "flag_rule", "optional_task_names", "radiomics_rule", "reported_metrics",
           "selection_headlines", "summary_metrics", "trained_tasks"]
