"""The shipped-model format: weights as safetensors (float16) plus one JSON, loaded without pickle.

A shipped model is a folder holding

- ``model.json``: ``format`` / ``version``, ``model_id``, the resolved training ``config``, the ``preprocessing``
  record (:mod:`rlar.training.preprocessing`), the ``label_space``, the radiomics ``standardiser`` and
  ``radiomics_reference``, and one entry per ensemble member (fold, seed, epoch, sha256 of the checkpoint it came
  from, the tensor-name prefix of its weights);
- ``weights.safetensors``: every member's state dict in float16 (integer buffers kept as they are), the tensors
  of member ``k`` named ``m<k>.<parameter>``.

JSON and safetensors hold data only, so loading runs no code from the file (unlike a pickled ``.pt``).
:func:`convert_run` writes the format from a trained run, a folder of fold runs or a grid arm (the runs are
ensembled by the predictor), checking the :data:`MAX_TOTAL_MB` budget; :func:`load_shipped` turns it back into
:class:`~rlar.inference.loading.TrainedModel` members for :class:`~rlar.inference.Predictor`.

The model shipped inside the package lives in :data:`PACKAGED_DIR` (``rlar/models_zoo/ddti``); ``rlar predict``
and the Predictor use it when no model is named, and say which model answered.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from rlar import __version__
from rlar.data.labels import LabelSpace
from rlar.errors import ConfigError, DataError
from rlar.inference.loading import TrainedModel, build_network, load_trained_model, sha256_of
from rlar.training.checkpoint import check_finite_weights
from rlar.training.config import config_to_dict, validate_config
from rlar.training.run import to_jsonable, write_text

SHIPPED_FORMAT = "rlar-shipped-model"
SHIPPED_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.safetensors"
#: Budget of one shipped model folder (the package must stay installable from a registry).
MAX_TOTAL_MB = 40.0
#: Where the package's own model lives (absent until one is converted into it).
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "models_zoo" / "ddti"
#: How to get a model when the package ships none yet.
HOW_TO_GET = ("train one (`rlar train --config ddti:cpu --set data.root=PATH/TO/DDTI --fold all --out runs/ddti`) "
              "and give `--model runs/ddti`, or convert a trained run into the shipped format with "
              "`rlar export --model RUN --format shipped --out DIR` and give `--model DIR`")


def is_shipped_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / MODEL_JSON).is_file() and (path / WEIGHTS_FILE).is_file()


def _half(weights: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().cpu()
        out[name] = (tensor.half() if tensor.is_floating_point() else tensor).contiguous()
    return out


def convert_run(path: str | Path, out_dir: str | Path, model_id: str | None = None,
                folds: Sequence[int] | None = None, seeds: Sequence[int] | None = None,
                max_total_mb: float = MAX_TOTAL_MB) -> Path:
    """Write the shipped format of ``path`` (a run, a folder of fold runs, a grid arm or a checkpoint) into
    ``out_dir``; returns ``out_dir``. DataError when the members differ in anything but fold/seed, a weight is not
    finite, or the folder would exceed ``max_total_mb`` (then nothing is left behind)."""
    from safetensors.torch import save_file

    from rlar.inference.predictor import Predictor, find_run_checkpoints

    files = find_run_checkpoints(path, folds, seeds)
    members = [load_trained_model(f) for f in files]
    Predictor(members)  # refuses members that may not be ensembled, with the reason
    lead = members[0]
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    for k, member in enumerate(members):
        prefix = f"m{k}."
        tensors.update({prefix + name: value for name, value in _half(member.model.state_dict()).items()})
        entries.append({"prefix": prefix, "fold": member.fold, "epoch": member.checkpoint.get("epoch"),
                        "seed": member.config.training.seed,
                        "source_checkpoint": member.path.name, "source_sha256": member.sha256})
    check_finite_weights(tensors, path)  # float16 overflows to inf for weights beyond 65504
    cfg = lead.config
    meta = {
        "format": SHIPPED_FORMAT,
        "version": SHIPPED_VERSION,
        "model_id": model_id or f"rlar-{cfg.method}-{cfg.data.source}-{len(members)}x-{lead.sha256[:8]}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "rlar_version": __version__,
        "dtype": "float16",
        "config": config_to_dict(cfg),
        "preprocessing": lead.prep.to_dict(),
        "label_space": {"scale": lead.label_space.scale, "task": lead.label_space.task,
                        "classes": list(lead.label_space.class_names)},
        "standardiser": lead.checkpoint.get("standardiser"),
        "radiomics_reference": lead.checkpoint.get("radiomics_reference"),
        "members": entries,
    }
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".weights.", suffix=".tmp", dir=out)
        os.close(fd)
        save_file(tensors, tmp, metadata={"format": SHIPPED_FORMAT, "dtype": "float16"})
        text = json.dumps(to_jsonable(meta), indent=1) + "\n"
    except OSError as exc:
        raise DataError(out, f"cannot write the shipped model ({exc.strerror or exc})") from None
    total_mb = (Path(tmp).stat().st_size + len(text.encode())) / 1e6
    if total_mb > max_total_mb:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(out, f"the shipped model would take {total_mb:.1f} MB, over the {max_total_mb:g} MB budget: "
                             "ship fewer members or a smaller network")
    try:
        os.replace(tmp, out / WEIGHTS_FILE)
        write_text(out / MODEL_JSON, text)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(out, f"cannot write the shipped model ({exc.strerror or exc})") from None
    return out


def read_model_json(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MODEL_JSON
    try:
        meta = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(path, f"cannot read the shipped model's description ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != SHIPPED_FORMAT:
        raise DataError(path, f"not an rlar shipped model (no 'format: {SHIPPED_FORMAT}')")
    if int(meta.get("version", 0)) > SHIPPED_VERSION:
        raise DataError(path, f"shipped-model version {meta['version']} is newer than this rlar's ({SHIPPED_VERSION})")
    return meta


def load_shipped(folder: str | Path | None = None, device: str | torch.device = "cpu") -> list[TrainedModel]:
    """The members of a shipped model (default: the package's own), ready for the Predictor; no pickle is read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else PACKAGED_DIR
    if not is_shipped_dir(folder):
        if folder == PACKAGED_DIR:
            raise DataError("rlar", f"this installation ships no trained model yet: {HOW_TO_GET}")
        raise DataError(folder, f"not a shipped model folder ({MODEL_JSON} and {WEIGHTS_FILE})")
    meta = read_model_json(folder)
    weights_path = folder / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(weights_path, f"not a readable safetensors file ({exc})") from None
    try:
        cfg = validate_config(meta["config"])
        space = LabelSpace(meta["label_space"]["scale"], meta["label_space"]["task"])
    except (ConfigError, KeyError, TypeError) as err:
        raise DataError(folder / MODEL_JSON, f"its config or label space is not valid for this rlar ({err})") from None
    sha = sha256_of(weights_path)
    members = []
    for entry in meta.get("members") or []:
        prefix = entry["prefix"]
        state = {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}
        model = build_network(cfg, space.num_classes)
        own = model.state_dict()
        state = {name: value.to(own[name].dtype) if name in own else value for name, value in state.items()}
        check_finite_weights(state, weights_path)
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise DataError(weights_path, f"member {prefix} does not fit the network its config describes") from None
        model.to(device).eval()
        checkpoint = {"config": meta["config"], "label_space": {"scale": space.scale, "task": space.task},
                      "preprocessing": meta["preprocessing"], "standardiser": meta.get("standardiser"),
                      "radiomics_reference": meta.get("radiomics_reference"), "fold": entry.get("fold"),
                      "epoch": entry.get("epoch"), "model_id": meta.get("model_id"), "shipped": str(folder)}
        members.append(TrainedModel(model=model, config=cfg, label_space=space, checkpoint=checkpoint,
                                    path=weights_path, sha256=sha))
    if not members:
        raise DataError(folder / MODEL_JSON, "lists no member")
    return members


__all__ = ["HOW_TO_GET", "MAX_TOTAL_MB", "MODEL_JSON", "PACKAGED_DIR", "SHIPPED_FORMAT", "WEIGHTS_FILE",
           "convert_run", "is_shipped_dir", "load_shipped", "read_model_json"]
