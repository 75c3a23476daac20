"""Render docs/phantom.png: eight phantom cases with their ACR descriptors and level, and simulated readers.

Usage:
    python scripts/render_phantom_figure.py [--out docs/phantom.png] [--size 256] [--seed 0]

Rows 1-2: eight 256x256 cases whose descriptors together cover every rendered value (all compositions,
echogenicities, shapes, margins and foci; levels TR1-TR5). Row 3: the true contour and three default readers'
contours (tight, generous, smoother) on two cases, full view and zoomed, with each reader's Dice and grade.
The PNG is quantised to a small palette so the committed file stays well under 300 KB.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from rlar.data.phantom import default_panel, render_case  # noqa: E402

# (composition, echogenicity, shape, margin, foci), chosen to show every value the phantom renders.
CASES: list[tuple[str, str, str, str, str]] = [
    ("cystic", "anechoic", "wider_than_tall", "smooth", "none"),
    ("spongiform", "isoechoic", "wider_than_tall", "smooth", "none"),
    ("mixed", "isoechoic", "wider_than_tall", "smooth", "none"),
    ("solid", "hyperechoic", "wider_than_tall", "ill_defined", "none"),
    ("solid", "isoechoic", "wider_than_tall", "smooth", "rim"),
    ("mixed", "hypoechoic", "wider_than_tall", "smooth", "macrocalcifications"),
    ("solid", "hypoechoic", "taller_than_wide", "lobulated_irregular", "macrocalcifications"),
    ("solid", "very_hypoechoic", "taller_than_wide", "lobulated_irregular", "punctate"),
]
KEYS = ("composition", "echogenicity", "shape", "margin", "echogenic_foci")
SHORT = {
    "wider_than_tall": "wider",
    "taller_than_wide": "taller",
    "lobulated_irregular": "lobulated/irreg.",
    "ill_defined": "ill-defined",
    "macrocalcifications": "macrocalc.",
    "very_hypoechoic": "very hypo",
    "hyperechoic": "hyper",
    "isoechoic": "iso",
    "hypoechoic": "hypo",
    "anechoic": "anechoic",
    "none": "no foci",
    "punctate": "punctate foci",
    "rim": "rim calc.",
}
READER_COLOURS = ("#ff4040", "#40c0ff", "#ff60ff")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def title(case) -> str:
    d = [SHORT.get(case.descriptors[k], case.descriptors[k]) for k in KEYS]
    return f"{d[0]}, {d[1]}, {d[2]}\n{d[3]}, {d[4]}\n{case.points} points -> {case.level}"


def overlay(ax, case, annotations, crop: tuple[slice, slice] | None = None) -> None:
    image, truth = case.image, case.mask
    if crop is not None:
        image, truth = image[crop], truth[crop]
        annotations = [(m[crop], lvl) for m, lvl in annotations]
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.contour(truth, [0.5], colors="yellow", linewidths=1.3)
    for (mask, _), colour in zip(annotations, READER_COLOURS):
        ax.contour(mask, [0.5], colors=colour, linewidths=0.9)
    ax.set_axis_off()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "phantom.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size = (args.size, args.size)

    cases = [
        render_case(np.random.default_rng([args.seed, i]), size, dict(zip(KEYS, values)), seed=i)
        for i, values in enumerate(CASES)
    ]
    readers = default_panel(3, seed=args.seed, pixel_scale=args.size / 128)

    fig, axes = plt.subplots(3, 4, figsize=(12, 11.0), dpi=88, gridspec_kw={"hspace": 0.3})
    for ax, case in zip(axes[:2].ravel(), cases):
        ax.imshow(case.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title(case), fontsize=8.5)
        ax.set_axis_off()

    # Row 3: readers on a smooth hypoechoic nodule (A) and on a lobulated one (B).
    for col, case in ((0, cases[5]), (2, cases[6])):
        annotations = [r.annotate(case) for r in readers]
        overlay(axes[2, col], case, annotations)
        rows, cols = np.nonzero(case.mask)
        pad = args.size // 10
        crop = (
            slice(max(rows.min() - pad, 0), rows.max() + pad),
            slice(max(cols.min() - pad, 0), cols.max() + pad),
        )
        overlay(axes[2, col + 1], case, annotations, crop)
        name = "A" if col == 0 else "B"
        axes[2, col].set_title(f"{name}: truth (yellow) and 3 readers", fontsize=8.5)
        summary = "\n".join(
            f"{r.name}: Dice {dice(m, case.mask):.2f}, grade {lvl}" for r, (m, lvl) in zip(readers, annotations)
        )
        axes[2, col + 1].set_title(f"{name} zoomed (truth {case.level})\n{summary}", fontsize=7.5)
    handles = [plt.Line2D([], [], color="yellow", lw=1.5, label="truth")] + [
        plt.Line2D([], [], color=c, lw=1.2, label=r.name) for r, c in zip(readers, READER_COLOURS)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle("rlar synthetic thyroid ultrasound phantom (256x256): ACR descriptors -> TI-RADS level", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.04, wspace=0.04)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    # Fixed palette (48 greys + the contour colours), no dithering: cuts the file size several-fold while
    # keeping the images' grey levels and the contours' hues exact (an adaptive palette merges the thin
    # coloured contours into greys).
    colours = [(g, g, g) for g in np.linspace(0, 255, 48).astype(int)]
    colours += [(255, 255, 0)] + [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in READER_COLOURS]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for c in colours for v in c] + [0] * 3 * (256 - len(colours)))
    image = Image.open(buffer).convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
