"""Annotator-disagreement levels of the phantom study, and the label noise each level really has.

The phantom (``rlar.data.sources.phantom``) renders every image with its true mask and ACR level and lets
simulated readers (``rlar.data.phantom.readers.default_panel``: tight, generous, smoother, shaky, expert) annotate
it. A level says which annotations training sees, through the source's own options (``readers``,
``mask_from``, ``label_from``, ``disagreement``); nothing here changes the phantom. Every noisy level draws one of
the same five readers per image; what grows is ``disagreement``, the factor on each reader's departures from the
truth (dilation or erosion, smoothing, contour wobble, and the probability of grading one level off), so contour
and grade disagreement rise together:

===========  ============  ======================================================================
level        disagreement  training labels: mask Dice vs truth / grade error rate (measured)
===========  ============  ======================================================================
L0-truth     --            the true masks and levels: 1.000 / 0.000 (the ceiling)
L1-mild      1.0           the shipped reader styles: 0.956 / 0.183
L2-moderate  1.5           0.921 / 0.233
L3-strong    2.0           0.880 / 0.308
L4-severe    3.0           0.789 / 0.425
===========  ============  ======================================================================

Measured with :func:`measure_label_noise` on 120 phantom cases at 96 px (the phantom's ``cpu`` size). Reader styles
scale with the image (``pixel_scale = min(size) / 128``), so at 32 px the contour noise almost vanishes and only the
grade noise remains. A level's name is not a measurement: :func:`measure_label_noise` reports these two numbers
for the images a grid actually uses, and the study's figure puts them on its axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlar.errors import ConfigError


@dataclass(frozen=True)
class ReaderLevel:
    """One disagreement level: its name, a one-line description and the phantom source options it sets."""

    name: str
    description: str
    options: dict[str, Any]

    def overrides(self) -> tuple[str, ...]:
        """``data.options.<key>=<value>`` config overrides selecting this level's training labels."""
        return tuple(f"data.options.{key}={value}" for key, value in self.options.items())


_TRUTH = {"mask_from": "truth", "label_from": "truth"}
_RANDOM = {"mask_from": "random_reader", "label_from": "random_reader", "readers": 5}

#: The study's levels, by increasing disagreement (see the module docstring).
READER_LEVELS: dict[str, ReaderLevel] = {
    level.name: level
    for level in (
        ReaderLevel("L0-truth", "true masks and levels", {**_TRUTH, "readers": 3}),
        ReaderLevel("L1-mild", "one of five readers per image, shipped styles", {**_RANDOM, "disagreement": 1.0}),
        ReaderLevel("L2-moderate", "one of five readers per image, styles x1.5", {**_RANDOM, "disagreement": 1.5}),
        ReaderLevel("L3-strong", "one of five readers per image, styles x2", {**_RANDOM, "disagreement": 2.0}),
        ReaderLevel("L4-severe", "one of five readers per image, styles x3", {**_RANDOM, "disagreement": 3.0}),
    )
}


def reader_level(name: str) -> ReaderLevel:
    """The level called ``name``; ConfigError listing the levels otherwise."""
    try:
        return READER_LEVELS[name]
    except KeyError:
        raise ConfigError("levels", f"unknown annotator level '{name}' (levels: {', '.join(READER_LEVELS)})") from None


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def measure_label_noise(source_options: dict[str, Any], levels: Sequence[str],
                        image_ids: Sequence[str] | None = None, max_images: int = 200) -> dict[str, dict[str, float]]:
    """Per level: ``mask_dice_vs_truth`` (mean Dice of the training mask against the true mask),
    ``grade_error_rate`` (fraction of training levels that are not the true level) and ``n_images``.

    Args:
        source_options: the phantom options of the grid (n_cases, image_size, seed ...); each level's own
            options are applied on top.
        image_ids: which images to measure (default: all), at most ``max_images`` of them, in sorted order.
    """
    from rlar.data.sources import open_source

    results: dict[str, dict[str, float]] = {}
    for name in levels:
        level = reader_level(name)
        source = open_source("phantom", None, **{**source_options, **level.options})
        wanted = set(image_ids) if image_ids is not None else None
        indices = [i for i, info in enumerate(source.infos) if wanted is None or info.image_id in wanted]
        indices = sorted(indices, key=lambda i: source.infos[i].image_id)[:max_images]
        dice, wrong = [], []
        for i in indices:
            sample = source[i]
            if sample.mask is not None:
                dice.append(_dice(sample.mask, sample.extras["true_mask"]))
            wrong.append(float(sample.info.tirads != sample.extras["true_level"]))
        results[name] = {
            "mask_dice_vs_truth": float(np.mean(dice)) if dice else float("nan"),
            "grade_error_rate": float(np.mean(wrong)) if wrong else float("nan"),
            "n_images": float(len(indices)),
        }
    return results


__all__ = ["READER_LEVELS", "ReaderLevel", "measure_label_noise", "reader_level"]
