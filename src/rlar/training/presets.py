"""The method presets (config key ``method``): the one registry the config validation, the CLI, the docs and the
tests read.

A preset names the architecture, the backbone, the gradient strategy and whether the radiomics guidance is on; the
config fills these only where the user left them unset. Adding a method preset = one line in :data:`PRESETS` (and,
for a new gradient strategy, its file and registry line in ``rlar.strategies``). This module imports no torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Arch = Literal["multitask", "segmentation", "classification"]


class MethodPreset(BaseModel):
    """One row of the method table (docs/interfaces.md, README)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Arch
    backbone: str
    strategy: str
    guided: bool  # the 13-dim TI-RADS-aligned radiomics guidance (rad loss) is on
    description: str = ""


def _mtl(strategy: str, guided: bool, description: str) -> MethodPreset:
    return MethodPreset(arch="multitask", backbone="compact", strategy=strategy, guided=guided, description=description)


PRESETS: dict[str, MethodPreset] = {
    "seg_only": MethodPreset(arch="segmentation", backbone="compact", strategy="sum", guided=False,
                             description="single-task segmentation on the multitask models' encoder (Dice + BCE)"),
    "cls_only": MethodPreset(arch="classification", backbone="compact", strategy="sum", guided=False,
                             description="single-task TI-RADS classifier on the multitask models' encoder "
                                         "(the fair single-task baseline)"),
    "cls_efficientnet": MethodPreset(arch="classification", backbone="efficientnet-b0", strategy="sum", guided=False,
                                     description="the paper's EfficientNet single-task classifier"),
    "cls_convnext": MethodPreset(arch="classification", backbone="convnext", strategy="sum", guided=False,
                                 description="the paper's ConvNeXt single-task classifier"),
    "vanilla_mtl": _mtl("sum", False, "multitask, equal-weight sum of the task losses"),
    "guided_mtl": _mtl("sum", True, "multitask, sum + L_rad (h_tirads -> radiomics targets)"),
    "rlar": _mtl("rlar", True, "multitask, sum + L_rad + RLAR penalty (the paper's method)"),
    "repmtl": _mtl("repmtl", False, "multitask, Rep-MTL saliency regularisation"),
    "pcgrad": _mtl("pcgrad", False, "multitask, PCGrad projection (torchjd) on the shared parameters"),
    "cagrad": _mtl("cagrad", False, "multitask, CAGrad (torchjd) on the shared parameters"),
    "nashmtl": _mtl("nashmtl", False, "multitask, Nash-MTL bargaining weights (torchjd)"),
    "uncertainty": _mtl("uncertainty", False, "multitask, learned homoscedastic-uncertainty weights"),
}
METHOD_NAMES: tuple[str, ...] = tuple(PRESETS)


def presets_table() -> str:
    """The method table as Markdown (what the docs show; a test checks the docs agree)."""
    lines = ["| method | arch | backbone | strategy | guidance (L_rad) | what |", "|---|---|---|---|---|---|"]
    for name, p in PRESETS.items():
        lines.append(f"| `{name}` | {p.arch} | {p.backbone} | `{p.strategy}` | {'on' if p.guided else 'off'} | "
                     f"{p.description} |")
    return "\n".join(lines)


__all__ = ["METHOD_NAMES", "PRESETS", "MethodPreset", "presets_table"]
