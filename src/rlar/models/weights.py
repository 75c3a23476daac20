"""Load pretrained weights from a local file the user names. rlar never downloads weights.

Accepted files (read with ``torch.load(weights_only=True)``, so no arbitrary code is executed):

* a state dict of the whole rlar network (e.g. from an earlier run), or
* a state dict of the backbone alone with the library's own keys (e.g. ImageNet EfficientNet weights in the layout
  MONAI's ``EfficientNetBN`` uses, or a MONAI 2-D ResNet state dict), or
* a checkpoint dict holding one of those under ``"state_dict"``, ``"model"`` or ``"model_state_dict"``.

A ``"module."`` prefix (DataParallel/DDP) is stripped. Whichever target (whole network or backbone) matches more keys
is loaded. When the image has one channel and the file's first convolution expects three (RGB ImageNet weights), the
kernel is summed over its input channels, which is exactly what the RGB network computes on a grey image replicated
to three channels. Other shape mismatches are skipped and reported. Missing and unexpected keys are reported in the
returned :class:`LoadReport` and as a warning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did."""

    path: str
    target: str  # "network" or "backbone"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the target, absent from the file (left as initialised)
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the target (ignored)
    mismatched: list[str] = field(default_factory=list)  # same key, incompatible shape (ignored)
    adapted: list[str] = field(default_factory=list)  # RGB first-conv kernels summed to one channel

    def summary(self) -> str:
        """One line per category, listing up to 10 keys each."""

        def fmt(keys: list[str]) -> str:
            more = f" ... (+{len(keys) - 10} more)" if len(keys) > 10 else ""
            return ", ".join(keys[:10]) + more

        lines = [f"{self.path}: loaded {len(self.loaded)} tensors into the {self.target}"]
        for label, keys in (
            ("adapted RGB->grey", self.adapted),
            ("missing (kept random init)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape mismatch (ignored)", self.mismatched),
        ):
            if keys:
                lines.append(f"  {label}: {len(keys)}: {fmt(keys)}")
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from ``path``; errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a loadable state dict"
        raise ValueError(
            f"{path}: cannot be read as a PyTorch state dict with torch.load(weights_only=True): {exc}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{path}: expected a state dict (mapping of parameter names to tensors), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict: entries {bad[:5]} are not (name -> tensor) pairs")
    prefix = "module."
    if all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return dict(obj)


def _first_conv_key(module: nn.Module) -> str | None:
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Conv2d):
            return f"{name}.weight" if name else "weight"
    return None


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    backbone: nn.Module | None = None,
    adapt: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> LoadReport:
    """Load the weights in ``path`` into ``model`` (whole network) or ``backbone`` (whichever matches more keys).

    ``adapt`` renames a backbone file's keys to the backbone module's layout (``Encoder.adapt_state_dict``, e.g.
    EfficientNet-Lite's flat block numbering to MONAI's nesting); it applies to the backbone candidate only.
    Raises ValueError naming the file when it is not a state dict or when none of its keys match either target.
    """
    raw = read_state_dict(path)
    candidates = [("network", model, raw)]
    if backbone is not None:
        candidates.append(("backbone", backbone, adapt(raw) if adapt is not None else raw))
    best_name, best_module, state, best_hits = candidates[0][0], candidates[0][1], raw, -1
    for name, module, keyed in candidates:
        hits = len(set(keyed) & set(module.state_dict()))
        if hits > best_hits:
            best_name, best_module, state, best_hits = name, module, keyed, hits
    if best_hits <= 0:
        example = ", ".join(list(state)[:5])
        expect = ", ".join(list((backbone or model).state_dict())[:5])
        raise ValueError(
            f"{path}: none of its {len(state)} keys match this network or its backbone "
            f"(file has e.g. {example}; expected e.g. {expect}) - is it for a different architecture?"
        )

    target = best_module.state_dict()
    report = LoadReport(path=str(path), target=best_name)
    first_conv = _first_conv_key(best_module)
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
            continue
        want = target[key]
        if value.shape != want.shape:
            # RGB stem on a grey image: sum over the 3 input channels (= running the RGB net on a replicated image).
            if key == first_conv and value.ndim == 4 and want.shape[1] == 1 and value.shape[1] == 3 and (
                value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]
            ):
                to_load[key] = value.sum(dim=1, keepdim=True)
                report.adapted.append(key)
                continue
            report.mismatched.append(f"{key} (file {tuple(value.shape)} vs model {tuple(want.shape)})")
            continue
        to_load[key] = value
    report.loaded = list(to_load)
    report.missing = [k for k in target if k not in to_load]
    best_module.load_state_dict(to_load, strict=False)
    if report.missing or report.unexpected or report.mismatched:
        warnings.warn(report.summary(), stacklevel=2)
    else:
        logger.info(report.summary())
    return report
