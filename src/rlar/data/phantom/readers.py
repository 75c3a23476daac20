"""Simulated annotators: inter-reader variability of nodule contours and TI-RADS grades.

Real reference standards come from readers who differ in systematic ways (one traces the inside of the
halo, another the outside; one rounds every contour; one is shaky) and who sometimes grade a nodule one level
off. :class:`ReaderModel` reproduces those styles on the phantom's true mask so that experiments can measure
how label noise of a known kind affects training and evaluation.

A reader's contour is the zero level of the true mask's signed distance (pixels, positive inside) plus:

* ``dilation_px``: a constant offset (>0 generous/outside tracer, <0 tight/eroding tracer);
* ``contour_noise``: a smooth random displacement field (std in pixels, correlation length ~5 % of the
  image) so the contour wobbles along its length like a hand-drawn one;
* ``smoothing``: Gaussian smoothing (sigma, pixels) of the drawn region, which rounds lobulations and
  corners as a reader who draws a few control points does.

The drawn region is then made one filled connected piece, as any contouring tool produces. The grade is the
true level, shifted by one level up or down with probability ``grade_noise`` (inward at TR1/TR5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rlar.data.phantom.acr import ACR_LEVELS
from rlar.data.phantom.render import PhantomCase
from rlar.errors import ConfigError, DataError


@dataclass(frozen=True)
class ReaderModel:
    """One simulated annotator's style. Lengths are in pixels of the image being annotated."""

    dilation_px: float = 0.0
    smoothing: float = 0.0
    contour_noise: float = 0.0
    grade_noise: float = 0.0
    seed: int = 0
    name: str = "reader"

    def __post_init__(self) -> None:
        if self.smoothing < 0:
            raise ConfigError("smoothing", f"must be >= 0 pixels, got {self.smoothing}")
        if self.contour_noise < 0:
            raise ConfigError("contour_noise", f"must be >= 0 pixels, got {self.contour_noise}")
        if not 0.0 <= self.grade_noise <= 1.0:
            raise ConfigError("grade_noise", f"is a probability in [0, 1], got {self.grade_noise}")

    def grade(self, level: str, rng: np.random.Generator) -> str:
        """The level this reader reports for a nodule whose true level is ``level``."""
        if level not in ACR_LEVELS:
            raise DataError(level, f"not an ACR level ({', '.join(ACR_LEVELS)})")
        index = ACR_LEVELS.index(level)
        if rng.random() >= self.grade_noise:
            return level
        step = 1 if rng.random() < 0.5 else -1
        if not 0 <= index + step < len(ACR_LEVELS):
            step = -step  # at the ends of the scale the only possible error is inward
        return ACR_LEVELS[index + step]

    def delineate(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """This reader's contour of the nodule whose true extent is ``mask`` (bool HxW) -> bool HxW.

        Never empty: if the style would erase a tiny nodule, the reader draws the true mask instead (a human
        who sees a nodule draws something).
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2 or not mask.any():
            raise DataError("mask", f"a reader needs a non-empty 2-D mask, got shape {mask.shape}")
        # Work in a box around the nodule: a style only moves the contour by a few pixels, and the distance
        # transforms are the cost (several times cheaper on the box than on the image).
        reach = int(np.ceil(abs(self.dilation_px) + 4 * self.contour_noise + 3 * self.smoothing)) + 3
        rows, cols = np.nonzero(mask)
        box = (
            slice(max(rows.min() - reach, 0), min(rows.max() + reach + 1, mask.shape[0])),
            slice(max(cols.min() - reach, 0), min(cols.max() + reach + 1, mask.shape[1])),
        )
        local = mask[box]
        signed = ndimage.distance_transform_edt(local) - ndimage.distance_transform_edt(~local)
        level = signed.astype(np.float32) + np.float32(self.dilation_px)
        if self.contour_noise > 0:
            corr = max(2.0, 0.05 * min(mask.shape))  # correlation length follows the image, not the box
            # Full-resolution Gaussian-filtered noise (the box is small): a smooth, hand-drawn-like wobble
            # without the kinks a coarse-grid interpolated field would put in the contour.
            wobble = ndimage.gaussian_filter(rng.standard_normal(local.shape, dtype=np.float32), corr, truncate=2.5)
            level += np.float32(self.contour_noise) * wobble / (wobble.std() + 1e-6)
        drawn = level > 0
        if self.smoothing > 0 and drawn.any():
            drawn = ndimage.gaussian_filter(drawn.astype(np.float32), self.smoothing) > 0.5
        if drawn.any():
            labels, n = ndimage.label(drawn)
            if n > 1:  # one contour per nodule: keep the largest piece
                drawn = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
            drawn = ndimage.binary_fill_holes(drawn)
        if not drawn.any():
            return mask.copy()
        out = np.zeros_like(mask)
        out[box] = drawn
        return out

    def annotate(self, case: PhantomCase, rng: np.random.Generator | None = None) -> tuple[np.ndarray, str]:
        """(mask, level) this reader gives ``case``.

        rng: the stream for this annotation; by default derived from (``self.seed``, ``case.seed``) so the
        same reader annotating the same case always gives the same answer. The grade and the contour use
        independent child streams, so a caller can reproduce the grade alone (``grade`` with
        ``rng.spawn(2)[0]`` of an identically seeded generator) without drawing the contour.
        """
        if rng is None:
            rng = np.random.default_rng([self.seed, 0 if case.seed is None else int(case.seed)])
        grade_rng, mask_rng = rng.spawn(2)
        return self.delineate(case.mask, mask_rng), self.grade(case.level, grade_rng)


# Reader styles of the default panel, in order (pixel lengths at 128x128; scaled with the image size).
_STYLES: tuple[dict[str, float | str], ...] = (
    {"name": "tight", "dilation_px": -1.5, "smoothing": 0.5, "contour_noise": 0.6, "grade_noise": 0.15},
    {"name": "generous", "dilation_px": 2.0, "smoothing": 1.0, "contour_noise": 0.8, "grade_noise": 0.2},
    {"name": "smoother", "dilation_px": 0.0, "smoothing": 3.0, "contour_noise": 0.5, "grade_noise": 0.1},
    {"name": "shaky", "dilation_px": 0.5, "smoothing": 0.5, "contour_noise": 1.8, "grade_noise": 0.3},
    {"name": "expert", "dilation_px": 0.0, "smoothing": 0.5, "contour_noise": 0.3, "grade_noise": 0.05},
)


def default_panel(n: int = 3, seed: int = 0, pixel_scale: float = 1.0, disagreement: float = 1.0) -> list[ReaderModel]:
    """``n`` readers with different styles: tight (eroding), generous (dilating), smoother, shaky, expert,
    then the cycle repeats (with different seeds). ``pixel_scale`` multiplies the pixel lengths, e.g.
    ``min(image_size) / 128`` so that a reader's style looks the same at any resolution. ``disagreement``
    multiplies every departure from the truth (dilation, smoothing, contour noise and grade noise, the latter
    capped at 1): 0 makes every reader exact, 2 doubles each style, so one panel spans a graded range of
    inconsistency without changing who its readers are."""
    if n < 0:
        raise ConfigError("readers", f"number of readers must be >= 0, got {n}")
    if not np.isfinite(disagreement) or disagreement < 0:
        raise ConfigError("disagreement", f"must be a finite number >= 0, got {disagreement}")
    panel = []
    for r in range(n):
        style = dict(_STYLES[r % len(_STYLES)])
        name = str(style.pop("name")) + ("" if r < len(_STYLES) else f"-{r // len(_STYLES) + 1}")
        lengths = {k: float(v) * disagreement * (pixel_scale if k != "grade_noise" else 1.0) for k, v in style.items()}
        lengths["grade_noise"] = min(lengths["grade_noise"], 1.0)
        panel.append(ReaderModel(**lengths, seed=seed * 1000 + r, name=name))
    return panel


__all__ = ["ReaderModel", "default_panel"]
