"""Training checkpoints: atomic writes, safe loads.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no arbitrary pickles executed when a clinician opens a shared file). Keys:

``format``, ``version``, ``model``, ``optimizer``, ``scheduler``, ``strategy`` (state dicts), ``rng``
(see :mod:`rlar.training.seeding`), ``epoch`` (completed epochs), ``global_step``, ``best_score``,
``best_epoch``, ``bad_validations`` (early-stopping counter), ``config`` (the resolved config as a plain dict),
``standardiser`` (radiomics standardisation as plain lists, or None), ``label_space`` ({scale, task}),
``history`` (per-epoch log rows), ``preprocessing`` (what the network was trained on:
:class:`rlar.training.preprocessing.Preprocessing`, added here from ``config`` and ``label_space`` when the caller
gives none, so every checkpoint carries it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from rlar.errors import DataError
from rlar.runs import BEST, CHECKPOINT_DIR

CHECKPOINT_FORMAT = "rlar-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("model", "config", "epoch")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, then os.replace.

    A run killed mid-write therefore leaves either the previous complete checkpoint or the new one, never a
    truncated file (os.replace is atomic on POSIX and Windows when both paths are on one file system). A kill -9
    leaves its temporary file behind (no handler runs); the next save of the same checkpoint removes such
    leftovers (one process writes a run folder at a time: the runner's lock and ``rlar train``'s refusal).
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    if "preprocessing" not in payload and isinstance(payload.get("config"), dict):
        from rlar.training.preprocessing import preprocessing_from_config

        payload["preprocessing"] = preprocessing_from_config(payload["config"], payload.get("label_space")).to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # from a writer killed mid-write
            leftover.unlink(missing_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataError(path, f"cannot write the checkpoint ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except (OSError, RuntimeError) as exc:  # disk full (torch.save raises RuntimeError from its zip writer), ...
        Path(tmp_name).unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise DataError(path, f"cannot write the checkpoint ({reason}; is the disk full?); the previous file is "
                              "kept") from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, without PyTorch's advice to retry with weights_only=False (unsafe).

    An empty message (EOFError on a truncated file) gives the type alone instead of an IndexError.
    """
    lines = [line for line in str(exc).splitlines() if line.strip()]
    first = next((line for line in lines if "weights_only" not in line), "")
    return f"{type(exc).__name__}: {first.strip()}" if first else type(exc).__name__


def non_finite_parameters(weights: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or infinity."""
    return [name for name, value in weights.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_finite_weights(weights: dict[str, Any], path: str | Path) -> None:
    """DataError naming the file and the first parameters when any weight is NaN or infinite.

    Such a network answers NaN for every image (and exports as an all-NaN ONNX graph): a diverged or damaged
    checkpoint, never something to predict with.
    """
    bad = non_finite_parameters(weights)
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError(path, f"the weights hold NaN or infinite values ({', '.join(bad[:3])}{more}): the training "
                              "diverged or the file is damaged; use another checkpoint")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises DataError naming the file when it is missing, unreadable, or not an rlar checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        hint = (f" (a run folder? name its {CHECKPOINT_DIR}/{BEST})" if (path / CHECKPOINT_DIR).is_dir()
                else "")
        raise DataError(path, f"is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise DataError(path, "checkpoint file does not exist")
    if path.stat().st_size == 0:
        raise DataError(path, "checkpoint file is empty (0 bytes): an interrupted copy? Use another checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... depending on the damage
        raise DataError(path, f"not a readable rlar checkpoint ({_first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(path, "not an rlar checkpoint (no 'format: rlar-checkpoint' entry)")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise DataError(path, f"checkpoint version {state['version']} is newer than this rlar ({CHECKPOINT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise DataError(path, f"checkpoint lacks {', '.join(missing)}")
    return state
