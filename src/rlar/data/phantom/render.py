"""Synthesis of B-mode-like transverse thyroid ultrasound images with one nodule of known ACR descriptors.

The renderer follows the image-formation chain of a linear-array B-mode scanner, coarsely, so that the
artefacts radiologists use to read a nodule arise from the physics instead of being painted on:

1. **Tissue maps** (geometry, drawn from ``rng``): backscatter in dB relative to thyroid parenchyma
   (skin, subcutaneous fat, strap and sternocleidomastoid muscles with striations, the thyroid lobe with its
   capsule, carotid artery and jugular vein, trachea, deep neck muscles, the nodule), *specular* reflectors
   (skin line, fascia, capsule, vessel walls, calcifications) and a two-way attenuation map (tissue, fluid,
   calcium, air).
2. **Scattering**: complex circular Gaussian scatterers weighted by the square root of the backscatter,
   plus the coherent specular amplitude, filtered by an anisotropic Gaussian point-spread function (longer
   laterally than axially, as for a real beam) -> the envelope is Rayleigh-distributed speckle with a
   realistic elongated grain, not smooth noise.
3. **Propagation**: cumulative attenuation along depth. Calcium and air attenuate strongly, giving posterior
   acoustic *shadows*; fluid barely attenuates, giving posterior *enhancement* below cysts and vessels. A
   time-gain-compensation curve (with small slider errors) compensates most, not all, of the tissue loss,
   so the image darkens gently with depth as on a scanner.
4. **Display**: electronic noise floor, gain set on the parenchyma, log compression to a 55 dB dynamic range.

Echogenicity is *relative to the parenchyma* as the ACR lexicon defines it: hyper +6 dB, iso 0 dB (with a thin
hypoechoic halo that makes an isoechoic nodule visible, as in practice), hypo -7 dB, very hypo -15 dB (darker
than the strap muscles at -9 dB, which is the ACR definition of "very hypoechoic"), anechoic (fluid) -40 dB.

Composition values rendered: ``cystic``, ``spongiform``, ``mixed`` (the ACR category "mixed cystic and solid";
the phantom writes ``mixed``, never the DDTI-only ``mixed_cystic``/``mixed_solid``), ``solid``. Margins:
``smooth``, ``lobulated_irregular`` (radial harmonics), ``ill_defined`` (blurred boundary). Echogenic foci:
``none``, ``macrocalcifications`` (with shadowing), ``rim`` (peripheral arc, partial shadowing),
``punctate`` (tiny bright dots, no shadow). ``extrathyroidal_extension`` and ``comet_tail`` are not rendered.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from rlar.data.phantom.acr import acr_level, acr_points
from rlar.data.record import DESCRIPTOR_VALUES
from rlar.errors import DataError

# The subset of the canonical vocabulary the phantom can render.
PHANTOM_VALUES: dict[str, tuple[str, ...]] = {
    "composition": ("cystic", "spongiform", "mixed", "solid"),
    "echogenicity": ("anechoic", "hyperechoic", "isoechoic", "hypoechoic", "very_hypoechoic"),
    "shape": ("wider_than_tall", "taller_than_wide"),
    "margin": ("smooth", "lobulated_irregular", "ill_defined"),
    "echogenic_foci": ("none", "macrocalcifications", "rim", "punctate"),
}
assert all(set(v) <= set(DESCRIPTOR_VALUES[k]) for k, v in PHANTOM_VALUES.items())

# Prior used to draw descriptors. Chosen so that every ACR level is common (see sample_descriptors), not to
# mimic clinical prevalence, where TR1/TR5 are rare.
DESCRIPTOR_PRIOR: dict[str, dict[str, float]] = {
    "composition": {"cystic": 0.08, "spongiform": 0.08, "mixed": 0.36, "solid": 0.48},
    "echogenicity": {"hyperechoic": 0.12, "isoechoic": 0.38, "hypoechoic": 0.36, "very_hypoechoic": 0.14},
    "shape": {"wider_than_tall": 0.78, "taller_than_wide": 0.22},
    "margin": {"smooth": 0.60, "lobulated_irregular": 0.25, "ill_defined": 0.15},
    "echogenic_foci": {"none": 0.60, "macrocalcifications": 0.15, "rim": 0.08, "punctate": 0.17},
}

# Backscatter of the nodule's solid tissue relative to parenchyma (dB).
ECHO_DB: dict[str, float] = {
    "hyperechoic": 6.0,
    "isoechoic": 0.0,
    "hypoechoic": -9.0,
    "very_hypoechoic": -20.0,
    "anechoic": -40.0,
}
FLUID_DB = -40.0
MUSCLE_DB = -14.0  # strap muscles (mean of the striated pattern)
DYNAMIC_RANGE_DB = 55.0
PARENCHYMA_DISPLAY = 0.52  # display grey of the parenchyma after gain (scanner presets aim for mid-grey)


@dataclass
class PhantomCase:
    """One rendered image and its ground truth.

    image: float32 (H, W) in [0, 1]. mask: bool (H, W) true nodule extent. descriptors: the five ACR
    descriptors (canonical values). points/level: ACR TI-RADS total and "TR1".."TR5". layers: boolean maps of
    anatomy used to render (``gland``, ``cyst``, ``calcification``, ``vessel``), for tests and figures.
    seed: integer identifying the case for simulated readers (None when rendered from a bare generator).
    """

    image: np.ndarray
    mask: np.ndarray
    descriptors: dict[str, str]
    points: int
    level: str
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    seed: int | None = None


def validate_descriptors(descriptors: Mapping[str, Any]) -> dict[str, str]:
    """Check that descriptors name only renderable values and are self-consistent; return a plain copy.

    Raises DataError naming the key: unknown key/value, missing key, or cystic without anechoic (and the
    reverse): ACR reserves "anechoic" for cystic or almost completely cystic nodules.
    """
    unknown = set(descriptors) - set(PHANTOM_VALUES)
    if unknown:
        raise DataError(sorted(unknown)[0], f"not a descriptor; expected keys {', '.join(PHANTOM_VALUES)}")
    out: dict[str, str] = {}
    for key, values in PHANTOM_VALUES.items():
        value = descriptors.get(key)
        if value is None:
            raise DataError(key, "descriptor missing; the phantom needs all five")
        if value not in values:
            raise DataError(key, f"'{value}' cannot be rendered by the phantom; choose one of {', '.join(values)}")
        out[key] = str(value)
    if (out["composition"] == "cystic") != (out["echogenicity"] == "anechoic"):
        raise DataError(
            "echogenicity",
            f"'{out['echogenicity']}' with composition '{out['composition']}': anechoic goes with cystic only",
        )
    return out


def _draw(rng: np.random.Generator, key: str, allowed: tuple[str, ...] | None = None) -> str:
    # One uniform draw against the cumulative prior: ~50x faster than rng.choice, which matters because
    # level-conditioned sampling rejects many draws for each case.
    probs = DESCRIPTOR_PRIOR[key]
    names = [n for n in probs if allowed is None or n in allowed]
    target = rng.random() * sum(probs[n] for n in names)
    for name in names:
        target -= probs[name]
        if target < 0:
            return name
    return names[-1]


def _draw_once(rng: np.random.Generator) -> dict[str, str]:
    composition = _draw(rng, "composition")
    if composition == "cystic":
        # A simple cyst: anechoic, round, smooth, no foci -> TR1, as in practice.
        return {
            "composition": "cystic",
            "echogenicity": "anechoic",
            "shape": "wider_than_tall",
            "margin": "smooth",
            "echogenic_foci": "none",
        }
    if composition == "spongiform":
        # ACR: "if there is concern for irregular margins or suspicious foci, reconsider spongiform".
        return {
            "composition": "spongiform",
            "echogenicity": _draw(rng, "echogenicity", ("isoechoic", "hyperechoic")),
            "shape": "wider_than_tall",
            "margin": _draw(rng, "margin", ("smooth", "ill_defined")),
            "echogenic_foci": "none",
        }
    return {
        "composition": composition,
        "echogenicity": _draw(rng, "echogenicity"),
        "shape": _draw(rng, "shape"),
        "margin": _draw(rng, "margin"),
        "echogenic_foci": _draw(rng, "echogenic_foci"),
    }


def sample_descriptors(rng: np.random.Generator, level: str | None = None, max_tries: int = 10_000) -> dict[str, str]:
    """Draw plausible descriptors from :data:`DESCRIPTOR_PRIOR`; with ``level``, draw until the ACR level matches.

    Conditioning on a level drawn uniformly gives balanced classes while the descriptor combinations inside
    each level keep the prior's proportions (rejection sampling; cheap: ~10 draws on average).
    """
    if level is not None and level not in ("TR1", "TR2", "TR3", "TR4", "TR5"):
        raise DataError(str(level), "target level must be one of TR1..TR5")
    for _ in range(max_tries):
        descriptors = _draw_once(rng)
        if level is None or acr_level(acr_points(descriptors)) == level:
            return descriptors
    raise DataError(str(level), f"no descriptors with this level found in {max_tries} draws")  # pragma: no cover


# ----------------------------------------------------------------------------------------------------------
# geometry helpers (float32 throughout: rendering speed matters, the training demo renders hundreds per epoch)


def _radial_profile(rng: np.random.Generator, margin: str, theta: np.ndarray) -> np.ndarray:
    """Relative boundary radius r(theta) of the nodule (1 = the ellipse) for a margin type."""
    r = np.ones_like(theta)
    if margin == "lobulated_irregular":
        if rng.random() < 0.5:  # lobulated: a few large lobes
            orders, amp = rng.choice(np.arange(3, 7), size=2, replace=False), (0.09, 0.16)
        else:  # irregular: many small jagged bumps plus a large-scale dent
            orders, amp = np.concatenate([[2], rng.choice(np.arange(7, 16), size=4, replace=False)]), (0.04, 0.08)
        for k in orders:
            r += np.float32(rng.uniform(*amp)) * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi)))
    else:
        for k in (2, 3):  # smooth and ill-defined: a gently deformed ellipse
            r += np.float32(rng.uniform(0.0, 0.035)) * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi)))
    return r


@functools.lru_cache(maxsize=16)
def _linear_upsampler(n_fine: int, n_coarse: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the lower neighbour and interpolation fractions to resample n_coarse -> n_fine points."""
    pos = np.linspace(0, n_coarse - 1, n_fine)
    lo = np.minimum(pos.astype(np.intp), n_coarse - 2)
    return lo, (pos - lo).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth zero-mean, unit-std random field with correlation length ~``sigma`` pixels.

    Drawn on a 4x coarser grid and upsampled bilinearly: the same look as filtering full-size noise at a
    fraction of the cost. (Gathers, not matrix products: multithreaded BLAS on tiny matrices is slow on a
    busy machine.)
    """
    h, w = shape[0] // 4 + 2, shape[1] // 4 + 2
    coarse: np.ndarray = ndimage.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), max(sigma / 4, 0.5))
    ly, fy = _linear_upsampler(shape[0], h)
    lx, fx = _linear_upsampler(shape[1], w)
    rows = coarse[ly] * (1 - fy)[:, None] + coarse[ly + 1] * fy[:, None]  # (H, w)
    fine = rows[:, lx] * (1 - fx)[None, :] + rows[:, lx + 1] * fx[None, :]
    return np.asarray((fine - fine.mean()) / (fine.std() + 1e-6))


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Squared normalised radius of an axis-aligned ellipse (< 1 inside)."""
    return ((yy - np.float32(cy)) / np.float32(ry)) ** 2 + ((xx - np.float32(cx)) / np.float32(rx)) ** 2


def _psf(field_: np.ndarray, sig_ax: float, sig_lat: float) -> np.ndarray:
    blurred: np.ndarray = ndimage.gaussian_filter(field_, (sig_ax, sig_lat), truncate=3.0)
    return blurred


# ----------------------------------------------------------------------------------------------------------
# render_case, step by step. Every step draws from ``rng`` (or ``view``) in a fixed order: the steps must be
# called in the order render_case calls them, and none may add, drop or reorder a draw, or the same seed
# would give a different phantom (tests/data/test_phantom_bits.py pins the output bit for bit).


@dataclass(frozen=True)
class _Grid:
    """The pixel grid of one image: size, length units and broadcast coordinates (H, 1) and (1, W)."""

    H: int
    W: int
    u: int  # length unit: anatomy scales with the smaller side
    px: float  # pixels per "reference pixel" (the look was tuned at 128x128)
    yy: np.ndarray
    xx: np.ndarray


@dataclass
class _Maps:
    """The acoustic property maps the anatomy is painted into.

    db: backscatter in dB relative to parenchyma. spec: coherent (specular) amplitude; speckle amplitude at
    0 dB is ~1. alpha: two-way attenuation in dB per pixel; ``alpha_unit`` is the soft-tissue value.
    """

    db: np.ndarray
    spec: np.ndarray
    alpha: np.ndarray
    alpha_unit: float


@dataclass(frozen=True)
class _Lobe:
    """The thyroid lobe before the nodule bulges it: centre, semi-axes and deformed radius map (< 1 inside)."""

    cy: float
    cx: float
    ry: float
    rx: float
    rho: np.ndarray


@dataclass(frozen=True)
class _Nodule:
    """The nodule's geometry: centre, semi-axes (b axial, a lateral), margin profile and true mask.

    theta: polar angle around the centre. profile: relative boundary radius r(theta). rho: normalised radius
    (< 1 inside). mask: the true extent (``rho < 1``).
    """

    cy: float
    cx: float
    a: float
    b: float
    theta: np.ndarray
    profile: np.ndarray
    rho: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class _Trachea:
    """The trachea at the medial edge: centre and radius."""

    cy: float
    cx: float
    r: float


def _grid(size: tuple[int, int]) -> _Grid:
    """Check the image size (at least 32x32) and build its grid."""
    H, W = int(size[0]), int(size[1])
    if H < 32 or W < 32:
        raise DataError(f"{H}x{W}", "phantom image size must be at least 32x32")
    u = min(H, W)
    yy, xx = np.arange(H, dtype=np.float32)[:, None], np.arange(W, dtype=np.float32)[None, :]
    return _Grid(H=H, W=W, u=u, px=u / 128.0, yy=yy, xx=xx)


def _deep_tissue(rng: np.random.Generator, g: _Grid) -> _Maps:
    """Start the maps: textured deep soft tissue (-12 dB), no specular echo, uniform tissue attenuation."""
    db = -12.0 + 2.0 * smooth_noise(rng, (g.H, g.W), 6 * g.px)
    alpha_unit = 16.0 / g.H  # two-way tissue attenuation, dB per pixel (16 dB over the image depth)
    spec = np.zeros((g.H, g.W), np.float32)
    alpha = np.full((g.H, g.W), alpha_unit, np.float32)
    return _Maps(db=db, spec=spec, alpha=alpha, alpha_unit=alpha_unit)


def _paint_skin_and_fat(rng: np.random.Generator, g: _Grid, maps: _Maps) -> float:
    """Paint the bright skin line and the subcutaneous fat with a few septa; return the fat's lower depth."""
    yy, xx, px, H, W = g.yy, g.xx, g.px, g.H, g.W
    skin = rng.uniform(0.02, 0.03) * H
    fat_bottom = skin + rng.uniform(0.05, 0.08) * H
    maps.db = np.where(yy < fat_bottom, np.float32(-9.0), maps.db)
    maps.spec += 3.0 * (np.abs(yy - skin) < 0.8 * px)
    for _ in range(rng.integers(0, 3)):  # a few short connective-tissue septa in the subcutaneous fat
        y0, x0 = rng.uniform(skin + 2 * px, fat_bottom), rng.uniform(0, 0.7) * W
        septum = np.abs(yy - (y0 + 2 * px * np.sin(xx / W * rng.uniform(2, 6) + rng.uniform(0, 6.3)))) < 0.5 * px
        maps.spec += 0.7 * (septum & (xx > x0) & (xx < x0 + rng.uniform(0.15, 0.4) * W))
    return fat_bottom


def _lobe_outline(rng: np.random.Generator, g: _Grid) -> _Lobe:
    """Draw the lobe: an ovoid whose outline is deformed by low-order harmonics."""
    f32 = np.float32
    yy, xx, H, W = g.yy, g.xx, g.H, g.W
    gcy, gcx = rng.uniform(0.50, 0.56) * H, rng.uniform(0.42, 0.48) * W
    gry, grx = rng.uniform(0.24, 0.28) * H, rng.uniform(0.30, 0.34) * W
    # r(theta) = 1 + c2 cos(2 theta + p2) + c3 cos(3 theta + p3), via polynomials in cos/sin theta (no arctan2).
    gy_, gx_ = (yy - f32(gcy)) / f32(gry), (xx - f32(gcx)) / f32(grx)
    gr2 = gy_**2 + gx_**2 + f32(1e-6)
    c, s_ = gx_ / np.sqrt(gr2), gy_ / np.sqrt(gr2)
    p2, p3 = rng.uniform(0, 2 * np.pi, size=2)
    gprof = 1 + f32(0.07) * ((c * c - s_ * s_) * f32(np.cos(p2)) - 2 * c * s_ * f32(np.sin(p2)))
    gprof += f32(0.05) * ((c**3 - 3 * c * s_ * s_) * f32(np.cos(p3)) - (3 * c * c * s_ - s_**3) * f32(np.sin(p3)))
    return _Lobe(cy=gcy, cx=gcx, ry=gry, rx=grx, rho=np.sqrt(gr2) / gprof)


def _nodule_geometry(rng: np.random.Generator, g: _Grid, desc: Mapping[str, str], lobe: _Lobe) -> _Nodule:
    """Draw the nodule inside the lobe: an ellipse deformed by the margin's radial profile.

    The axial semi-axis is then adjusted until the *mask* (not the ellipse: lobulation changes the extents)
    agrees with the shape descriptor.
    """
    f32 = np.float32
    yy, xx, u = g.yy, g.xx, g.u
    a = rng.uniform(0.10, 0.16) * u  # lateral (transverse) semi-axis
    ratio = rng.uniform(0.6, 0.85) if desc["shape"] == "wider_than_tall" else rng.uniform(1.2, 1.5)
    if desc["composition"] == "cystic":
        ratio = rng.uniform(0.8, 0.95)
    ncx = lobe.cx + rng.uniform(-0.2, 0.2) * lobe.rx
    ncy = lobe.cy + rng.uniform(-0.1, 0.1) * lobe.ry
    theta0 = np.arctan2(yy - f32(ncy), xx - f32(ncx))
    profile = _radial_profile(rng, desc["margin"], theta0)
    b = a * ratio
    for _ in range(6):  # enforce the shape descriptor on the *mask*: lobulation changes the extents
        rho = np.sqrt(_ellipse(yy, xx, ncy, ncx, b, a)) / profile
        mask = rho < 1.0
        rows, cols = np.nonzero(mask)
        ap, tr = np.ptp(rows) + 1, np.ptp(cols) + 1
        if (desc["shape"] == "taller_than_wide") == (ap > tr):
            break
        b *= 1.12 if desc["shape"] == "taller_than_wide" else 0.9
    return _Nodule(cy=ncy, cx=ncx, a=a, b=b, theta=theta0, profile=profile, rho=rho, mask=mask)


def _gland_with_isthmus(rng: np.random.Generator, g: _Grid, lobe: _Lobe, nod: _Nodule) -> tuple[np.ndarray, _Trachea]:
    """Build the gland mask and place the trachea.

    The nodule always sits in parenchyma: a big nodule bulges the lobe (smoothly: an ellipse around it). The
    isthmus is a thin band of parenchyma crossing anterior to the trachea (at the medial edge).
    """
    yy, xx, px, u, H, W = g.yy, g.xx, g.px, g.u, g.H, g.W
    reach = float(nod.profile.max()) + 6 * px / min(nod.a, nod.b)
    grho = np.minimum(lobe.rho, np.sqrt(_ellipse(yy, xx, nod.cy, nod.cx, nod.b * reach, nod.a * reach)))
    tr_ = rng.uniform(0.17, 0.21) * u
    tcx, tcy = -0.05 * W, lobe.cy + 0.05 * H
    isthmus_half = rng.uniform(0.025, 0.04) * H
    isthmus = np.sqrt(_ellipse(yy, xx, tcy - tr_ - isthmus_half - 1.5 * px, tcx, isthmus_half, lobe.cx - tcx))
    return (grho < 1.0) | (isthmus < 1.0), _Trachea(cy=tcy, cx=tcx, r=tr_)


def _paint_muscles(
    rng: np.random.Generator, g: _Grid, maps: _Maps, lobe: _Lobe, gland: np.ndarray, fat_bottom: float
) -> np.ndarray:
    """Paint the strap muscles (capping the gland anteriorly, thickest over it), the sternocleidomastoid
    (laterally) and their fascia; return the striation field ``fibres``, reused for the deep neck muscle.

    Muscle is hypoechoic with thin echogenic striations (perimysium) running along gently undulating fibres.
    """
    yy, xx, px, H, W = g.yy, g.xx, g.px, g.H, g.W
    gcx, grx = lobe.cx, lobe.rx
    gland_top = np.where(gland.any(axis=0), gland.argmax(axis=0), H).astype(np.float32)[None, :]
    strap_top = fat_bottom + 1.5 * px + 1.5 * px * np.sin(xx / W * 3 + rng.uniform(0, 6.3))
    thick = 0.14 * H * np.exp(-(((xx - gcx) / (1.25 * grx)) ** 4))
    strap_bottom = np.minimum(gland_top - 1.5 * px, strap_top + thick)
    strap = (yy > strap_top) & (yy < strap_bottom)
    scm = _ellipse(yy, xx, fat_bottom + 0.1 * H, gcx + grx + 0.14 * W, 0.085 * H, 0.24 * W) < 1
    muscle = (strap | scm) & ~gland
    wavy = yy + 1.5 * px * np.sin(xx / W * 5 + rng.uniform(0, 6.3))  # fibres undulate gently
    fibres = np.sin(wavy / (1.1 * px) + 2.0 * smooth_noise(rng, (H, W), 8 * px))
    maps.db = np.where(muscle, MUSCLE_DB + 3.0 * fibres, maps.db)
    maps.spec += 0.35 * (muscle & (fibres > 0.9))
    fascia = (np.abs(yy - strap_top) < 0.6 * px) | (np.abs(yy - strap_bottom) < 0.6 * px) & (thick > 2 * px)
    maps.spec += 0.6 * (fascia & (strap_bottom > strap_top))
    return fibres


def _paint_vessels(rng: np.random.Generator, g: _Grid, maps: _Maps, lobe: _Lobe, gland: np.ndarray) -> np.ndarray:
    """Paint the common carotid (round, bright wall) and the jugular vein (flattened, anterolateral) as
    fluid; return the vessel mask."""
    yy, xx, px, u, H = g.yy, g.xx, g.px, g.u, g.H
    cr = rng.uniform(0.08, 0.1) * u
    ccx, ccy = lobe.cx + lobe.rx + rng.uniform(0.06, 0.1) * u, lobe.cy + rng.uniform(0.0, 0.1) * H
    crho = np.sqrt(_ellipse(yy, xx, ccy, ccx, cr, cr))
    jugular = _ellipse(yy, xx, ccy - 1.25 * cr, ccx + 1.0 * cr, 0.4 * cr, 1.2 * cr) < 1
    vessel: np.ndarray = ((crho < 1) | jugular) & ~gland
    maps.db[vessel] = FLUID_DB
    maps.alpha[vessel] = 0.05 * maps.alpha_unit
    maps.spec += 1.0 * (np.abs(crho - 1.05) < 0.7 * px / cr)
    return vessel


def _paint_longus_colli(g: _Grid, maps: _Maps, lobe: _Lobe, gland: np.ndarray, fibres: np.ndarray) -> None:
    """Paint the deep neck muscle (longus colli), posteromedial to the lobe (no random draw)."""
    yy, xx, H, W = g.yy, g.xx, g.H, g.W
    lc = (_ellipse(yy, xx, lobe.cy + lobe.ry + 0.13 * H, lobe.cx - 0.3 * lobe.rx, 0.08 * H, 0.22 * W) < 1) & ~gland
    maps.db = np.where(lc, MUSCLE_DB - 1.0 + 3.0 * fibres, maps.db)


def _paint_trachea(g: _Grid, maps: _Maps, trachea: _Trachea) -> np.ndarray:
    """Paint the trachea (no random draw); return its reverberation map, added after the beam is formed.

    The bright anterior air wall blocks the beam (shadow), and its echo reverberates as fainter copies of
    the arc deeper down.
    """
    yy, xx, px = g.yy, g.xx, g.px
    tcy, tcx, tr_ = trachea.cy, trachea.cx, trachea.r
    trho = np.sqrt(_ellipse(yy, xx, tcy, tcx, tr_, tr_))
    anterior = yy < tcy
    maps.db = np.where(trho < 1 + 5 * px / tr_, -6.0, maps.db)  # cartilage ring
    tra_wall = (np.abs(trho - 1) < 1.0 * px / tr_) & anterior
    maps.spec += 5.0 * tra_wall
    maps.alpha[tra_wall] = 12.0 / px
    maps.db = np.where((trho < 1) & anterior, FLUID_DB, maps.db)
    reverb = np.zeros((g.H, g.W), np.float32)
    for k in (1, 2, 3):
        rk = np.sqrt(_ellipse(yy, xx, tcy + k * 8 * px, tcx, tr_, tr_))
        reverb += np.float32(0.35 / k) * ((np.abs(rk - 1) < 0.8 * px / tr_) & (yy < tcy + k * 8 * px) & (trho < 1))
    return reverb


def _paint_parenchyma(rng: np.random.Generator, g: _Grid, maps: _Maps, gland: np.ndarray, vessel: np.ndarray) -> None:
    """Paint the parenchyma (homogeneous fine texture, brighter than the muscles) and its thin bright capsule."""
    maps.db = np.where(gland, 1.0 * smooth_noise(rng, (g.H, g.W), 4 * g.px), maps.db)
    capsule = gland & ~ndimage.binary_erosion(gland, iterations=max(1, round(g.px)))
    maps.spec += 0.6 * (capsule & ~vessel)


def _paint_nodule_tissue(
    rng: np.random.Generator, g: _Grid, maps: _Maps, desc: Mapping[str, str], nod: _Nodule
) -> None:
    """Blend the nodule's solid tissue (echogenicity plus texture) into the maps across its margin.

    An ill-defined margin fades over ~a third of the radius; the others get a ~1.5 px anti-aliased edge.
    Iso- and hyperechoic nodules with a visible margin get a thin hypoechoic halo.
    """
    px, a, rho = g.px, nod.a, nod.rho
    het = 1.5 * smooth_noise(rng, (g.H, g.W), 3 * px)
    if desc["margin"] == "ill_defined":
        # The boundary fades over ~a third of the radius: blend weight from a blurred, noisy edge.
        weight = np.clip(0.5 + (1.0 - rho + 0.08 * het / 1.5) / 0.35, 0.0, 1.0)
    else:
        weight = np.clip(0.5 + (1.0 - rho) * np.float32(a / (0.7 * px)), 0.0, 1.0)  # ~1.5 px anti-aliased edge
    nodule_db = ECHO_DB[desc["echogenicity"]] + het
    if desc["echogenicity"] in ("isoechoic", "hyperechoic") and desc["margin"] != "ill_defined":
        # Thin hypoechoic halo: how isoechoic nodules are seen at all.
        nodule_db = np.where((rho > 1.0 - 1.8 * px / a) & nod.mask, -12.0, nodule_db)
    maps.db = weight * nodule_db + (1.0 - weight) * maps.db


def _paint_nodule_fluid(
    rng: np.random.Generator, g: _Grid, maps: _Maps, desc: Mapping[str, str], nod: _Nodule
) -> np.ndarray:
    """Paint the nodule's fluid spaces by composition (anechoic, barely attenuating); return the cyst mask.

    cystic: all fluid within a thin wall. mixed: 1-3 eccentric pockets covering 30-70 % of the nodule.
    spongiform: a honeycomb of tiny cysts with bright septa. solid: none.
    """
    yy, xx, px, H, W = g.yy, g.xx, g.px, g.H, g.W
    a, b, ncy, ncx, rho, mask = nod.a, nod.b, nod.cy, nod.cx, nod.rho, nod.mask
    cyst = np.zeros((H, W), dtype=bool)
    inner = rho < 1.0 - 2.0 * px / a  # fluid spaces keep a wall of solid tissue
    if desc["composition"] == "cystic":
        cyst = rho < 1.0 - 0.6 * px / a
        maps.spec += 1.2 * (mask & ~cyst)  # the thin cyst wall
    elif desc["composition"] == "mixed":
        for _ in range(20):  # 1-3 eccentric fluid pockets covering 25-70 % of the nodule
            cyst = np.zeros((H, W), dtype=bool)
            for _ in range(rng.integers(1, 4)):
                t, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.5)
                py, px_ = ncy + rr * b * np.sin(t), ncx + rr * a * np.cos(t)
                cyst |= _ellipse(yy, xx, py, px_, rng.uniform(0.35, 0.65) * b, rng.uniform(0.35, 0.65) * a) < 1
            cyst &= inner
            if 0.3 <= cyst.sum() / max(mask.sum(), 1) <= 0.7:
                break
    elif desc["composition"] == "spongiform":
        # Many tiny cystic spaces (>50 % of the area) separated by echogenic septa: a honeycomb.
        # Spaces on a jittered grid (spacing 2.2 radii -> ~60 % fluid) keep thin septa between them.
        r_sp = max(1.3 * px, 0.1 * a)
        step = 2.2 * r_sp
        gy = np.arange(ncy - 1.3 * b, ncy + 1.3 * b, step)
        gx = np.arange(ncx - 1.3 * a, ncx + 1.3 * a, step)
        cy_, cx_ = np.meshgrid(gy, gx, indexing="ij")
        cy_ = np.clip(np.rint(cy_ + rng.uniform(-0.2, 0.2, cy_.shape) * step), 0, H - 1).astype(int)
        cx_ = np.clip(np.rint(cx_ + rng.uniform(-0.2, 0.2, cx_.shape) * step), 0, W - 1).astype(int)
        seeds = np.ones((H, W), dtype=bool)
        seeds[cy_.ravel(), cx_.ravel()] = False
        cyst = (ndimage.distance_transform_edt(seeds) < r_sp) & inner
        maps.db = np.where(inner & ~cyst, maps.db + 4.0, maps.db)  # septa: bright walls of the microcysts
    maps.db[cyst] = FLUID_DB
    maps.alpha[cyst] = 0.05 * maps.alpha_unit
    maps.spec[cyst] = 0.0
    return cyst


def _paint_echogenic_foci(
    rng: np.random.Generator, g: _Grid, maps: _Maps, desc: Mapping[str, str], nod: _Nodule, cyst: np.ndarray
) -> np.ndarray:
    """Paint the echogenic foci; return the calcification mask.

    macrocalcifications: 1-2 bright blobs in solid tissue with a dense posterior shadow. rim: a peripheral
    arc with a partial shadow. punctate: 3-8 sub-resolution dots, no shadow. none: nothing.
    """
    yy, xx, px = g.yy, g.xx, g.px
    a, b, rho, mask = nod.a, nod.b, nod.rho, nod.mask
    calc = np.zeros((g.H, g.W), dtype=bool)
    foci = desc["echogenic_foci"]
    solid_y, solid_x = np.nonzero(mask & (rho < 0.7) & ~cyst)  # calcifications sit in soft tissue
    if foci == "macrocalcifications" and len(solid_y):
        for _ in range(rng.integers(1, 3)):
            pick = rng.integers(len(solid_y))
            cy_, cx_ = solid_y[pick], solid_x[pick]
            rad = max(2.0 * px, rng.uniform(0.14, 0.24) * a)
            calc |= _ellipse(yy, xx, cy_, cx_, rad * rng.uniform(0.6, 0.9), rad) < 1
        calc &= mask
        maps.spec += 9.0 * calc
        maps.alpha[calc] = 7.0 / px  # ~25 dB lost across the calcification: a dense posterior shadow
    elif foci == "rim":
        centre, span = rng.uniform(-np.pi, np.pi), rng.uniform(0.9, 1.6) * np.pi
        dtheta = np.angle(np.exp(1j * (nod.theta - centre)))
        calc = mask & (rho > 1.0 - 1.8 * px / min(a, b)) & (np.abs(dtheta) < span / 2)
        maps.spec += 8.0 * calc
        maps.alpha[calc] = 4.0 / px  # partial shadow: the interior stays visible
    elif foci == "punctate" and len(solid_y):
        picks = rng.choice(len(solid_y), size=min(int(rng.integers(3, 9)), len(solid_y)), replace=False)
        calc[solid_y[picks], solid_x[picks]] = True
        maps.spec += 22.0 * calc  # sub-resolution: spread by the PSF into small bright dots, no shadow
    return calc


def _acquire(
    view: np.random.Generator, g: _Grid, maps: _Maps, reverb: np.ndarray, parenchyma_mask: np.ndarray
) -> np.ndarray:
    """Form the B-mode image from the maps: scatter, blur by the PSF, attenuate, compensate, compress.

    Draws only from ``view`` (speckle, TGC slider errors, gain jitter). ``parenchyma_mask`` (gland outside
    the nodule) sets the gain so that the parenchyma shows at :data:`PARENCHYMA_DISPLAY`. Returns float32
    (H, W) in [0, 1].
    """
    f32 = np.float32
    H, W, px, yy, xx = g.H, g.W, g.px, g.yy, g.xx
    sig_ax, sig_lat = 0.55 * px, 1.0 * px  # the beam is wider laterally than the pulse is long
    # Electronic noise floor (-30 dB) joins the scatterers: it is filtered by the same receive chain.
    amp = np.sqrt((np.exp(maps.db.astype(f32) * f32(np.log(10) / 10)) + f32(1e-3)) / 2)
    intensity = np.zeros((H, W), f32)
    looks = 2  # spatial compounding: two independent looks soften the speckle's dark cracks, as scanners do
    for _ in range(looks):
        noise = view.standard_normal((2, H, W), dtype=f32)
        re = _psf(amp * noise[0] + maps.spec, sig_ax, sig_lat)
        im = _psf(amp * noise[1], sig_ax, sig_lat)
        intensity += re * re + im * im
    env = np.sqrt(intensity / looks)
    # Propagation loss above each pixel (exclusive cumulative sum: a reflector is not shadowed by itself),
    # blurred laterally because the beam has a finite width, so shadow edges are soft.
    loss = np.cumsum(maps.alpha, axis=0) - maps.alpha
    loss = ndimage.gaussian_filter1d(loss, sig_lat * 1.5, axis=1)
    tgc_err = view.normal(0.0, 1.0, size=6)  # slider positions are never perfectly even
    tgc = 0.65 * maps.alpha_unit * yy + np.interp(yy[:, :1] / H, np.linspace(0, 1, 6), tgc_err).astype(f32)
    lateral = -2.0 * (2 * xx / W - 1) ** 4  # slight fall-off at the ends of the array
    gain_db = tgc + lateral - loss
    env = env * np.exp(gain_db * f32(np.log(10) / 20)) + f32(0.35) * reverb * env.mean()
    parenchyma = parenchyma_mask & (gain_db > -6)
    ref = np.median(env[parenchyma]) if parenchyma.any() else np.median(env)
    env_db: np.ndarray = 20.0 * np.log10(env / ref + f32(1e-4))
    env_db += f32(view.normal(0.0, 0.8))  # gain knob jitter between acquisitions
    return np.clip(PARENCHYMA_DISPLAY + env_db / DYNAMIC_RANGE_DB, 0.0, 1.0).astype(np.float32)


def _package(
    image: np.ndarray,
    mask: np.ndarray,
    layers: dict[str, np.ndarray],
    desc: dict[str, str],
    side: int,
    seed: int | None,
) -> PhantomCase:
    """Mirror a left lobe (anatomy and beam are left-right symmetric), score the descriptors, build the case."""
    if side < 0:
        image, mask = image[:, ::-1], mask[:, ::-1]
        layers = {k: v[:, ::-1] for k, v in layers.items()}
    points = acr_points(desc)
    return PhantomCase(
        image=np.ascontiguousarray(image),
        mask=np.ascontiguousarray(mask),
        descriptors=desc,
        points=points,
        level=acr_level(points),
        layers={k: np.ascontiguousarray(v) for k, v in layers.items()},
        seed=seed,
    )


def render_case(
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 128),
    descriptors: Mapping[str, Any] | None = None,
    *,
    view_rng: np.random.Generator | None = None,
    seed: int | None = None,
) -> PhantomCase:
    """Render one transverse thyroid image with one nodule.

    rng: draws the descriptors (when not given) and the anatomy/nodule geometry.
    view_rng: draws what changes between two acquisitions of the same nodule (speckle realisation, TGC
        slider errors, gain); defaults to ``rng``. Two calls with equal ``rng`` state and different
        ``view_rng`` give two images of the same nodule with the same true mask.
    seed: stored on the case so simulated readers can derive their own streams from it.

    The anatomy is drawn for a right lobe (trachea at the left edge, vessels at the right) and mirrored at
    the end for a left one. The steps below draw from ``rng`` in this order; keep it (see the note above
    :class:`_Grid`).
    """
    g = _grid(size)
    desc = validate_descriptors(descriptors) if descriptors is not None else sample_descriptors(rng)
    view = rng if view_rng is None else view_rng
    side = 1 if rng.random() < 0.5 else -1  # which lobe

    # Anatomy around the gland.
    maps = _deep_tissue(rng, g)
    fat_bottom = _paint_skin_and_fat(rng, g, maps)
    lobe = _lobe_outline(rng, g)
    nod = _nodule_geometry(rng, g, desc, lobe)
    gland, trachea = _gland_with_isthmus(rng, g, lobe, nod)
    fibres = _paint_muscles(rng, g, maps, lobe, gland, fat_bottom)
    vessel = _paint_vessels(rng, g, maps, lobe, gland)
    _paint_longus_colli(g, maps, lobe, gland, fibres)
    reverb = _paint_trachea(g, maps, trachea)
    _paint_parenchyma(rng, g, maps, gland, vessel)

    # The nodule.
    _paint_nodule_tissue(rng, g, maps, desc, nod)
    cyst = _paint_nodule_fluid(rng, g, maps, desc, nod)
    calc = _paint_echogenic_foci(rng, g, maps, desc, nod, cyst)

    image = _acquire(view, g, maps, reverb, gland & ~nod.mask)
    layers = {"gland": gland, "cyst": cyst, "calcification": calc, "vessel": vessel}
    return _package(image, nod.mask, layers, desc, side, seed)


__all__ = [
    "DESCRIPTOR_PRIOR",
    "ECHO_DB",
    "PHANTOM_VALUES",
    "PhantomCase",
    "render_case",
    "sample_descriptors",
    "validate_descriptors",
]
