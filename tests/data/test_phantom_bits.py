"""Bit-for-bit guard of the phantom renderer: fixed seeds must give the same images, masks and labels.

The phantom is the reproducible benchmark, so a refactor of :func:`rlar.data.phantom.render_case` must keep
the order and number of every random draw. Each case below renders one image and compares a SHA-256 over
the float32 image bytes, the mask, every anatomy layer, the descriptors, points and level, and the final
state of both generators (which pins how many values were drawn from each) against values recorded from
the renderer before it was split into steps. The cases cover every composition, margin, echogenic-focus
type and shape, both lobes (mirrored images), non-square sizes and a separate ``view_rng``.

If a deliberate change of the renderer's look changes these values, re-record them (and say so in the
commit): they guard against *accidental* changes only. The image hash is exact float32 output, so it
assumes the same numpy/scipy numerics as the recording machine (numpy 2.4, scipy 1.17, x86-64).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from rlar.data.phantom import render_case


def _desc(composition: str, echogenicity: str, shape: str, margin: str, foci: str) -> dict[str, str]:
    return {
        "composition": composition,
        "echogenicity": echogenicity,
        "shape": shape,
        "margin": margin,
        "echogenic_foci": foci,
    }


# name -> (rng seed, (H, W), descriptors or None to sample them, view_rng seed or None to share rng)
CASES: dict[str, tuple[int, tuple[int, int], dict[str, str] | None, int | None]] = {
    "sampled_0": (0, (128, 128), None, None),
    "sampled_1": (1, (128, 128), None, None),
    "sampled_2_view": (2, (96, 160), None, 102),
    "cystic": (3, (128, 128), _desc("cystic", "anechoic", "wider_than_tall", "smooth", "none"), None),
    "spongiform": (4, (128, 128), _desc("spongiform", "isoechoic", "wider_than_tall", "ill_defined", "none"), None),
    "mixed_macro": (
        5,
        (128, 128),
        _desc("mixed", "hyperechoic", "wider_than_tall", "smooth", "macrocalcifications"),
        None,
    ),
    "solid_rim": (6, (160, 128), _desc("solid", "hypoechoic", "taller_than_wide", "lobulated_irregular", "rim"), 7),
    "solid_punctate": (
        8,
        (64, 64),
        _desc("solid", "very_hypoechoic", "taller_than_wide", "lobulated_irregular", "punctate"),
        None,
    ),
    "solid_lobulated_a": (
        9,
        (128, 128),
        _desc("solid", "isoechoic", "wider_than_tall", "lobulated_irregular", "none"),
        None,
    ),
    "solid_lobulated_b": (
        10,
        (128, 128),
        _desc("solid", "isoechoic", "wider_than_tall", "lobulated_irregular", "none"),
        None,
    ),
    "mixed_punctate": (11, (32, 48), _desc("mixed", "hypoechoic", "wider_than_tall", "ill_defined", "punctate"), 12),
}

EXPECTED: dict[str, str] = {
    "sampled_0": "7d5e8d8051f3c092690ff54868a647a1ee37a86731d1b306c0e3fe97c5d8fcd3",
    "sampled_1": "6b46782af57bafd1312c926d8a0c67107d7eecfe78ad34f8f9a341afd399c82a",
    "sampled_2_view": "2725217fa8ef3df71a03ecb074a9aca404c13d2ddb99a2db36abcd67a497124a",
    "cystic": "589de1ddde95e278e251a12390cc0ea11e01107e464d46bbb44a24f970101166",
    "spongiform": "cb9c623e99204aaa0d407b6fe2110635b8c13ff516a3425b85300a995406cedb",
    "mixed_macro": "d940604df8059bd834acf7a16459ae9acb5925d05e58b0f12efe570ef6832ce8",
    "solid_rim": "9fd3b8f3cb005f485703b58914a858b0b0670bebebebf4d42711567e295cdd31",
    "solid_punctate": "c31a5c2217b5337ec74a3fac5ffe96c83ae5400e6a08f8d01d8246e984a59bcf",
    "solid_lobulated_a": "71b509ca5941327251290ff47a3fc56028bd74546f43734ac185a6d576825777",
    "solid_lobulated_b": "1648c308d49c5484f825b1e58c0d90571e71096fcd20f6fbc7daaaa16947402a",
    "mixed_punctate": "ffd432e844c7ecf5470944db0362f58e3f4d75505046d94d7976bf917b8b2831",
}


def fingerprint(seed: int, size: tuple[int, int], descriptors: dict[str, str] | None, view_seed: int | None) -> str:
    """SHA-256 over everything one render produces and the generators' states after it."""
    rng = np.random.default_rng(seed)
    view = None if view_seed is None else np.random.default_rng(view_seed)
    case = render_case(rng, size, descriptors, view_rng=view, seed=seed)
    h = hashlib.sha256()
    for array in (case.image, case.mask, *(case.layers[k] for k in sorted(case.layers))):
        h.update(str((array.dtype, array.shape)).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(json.dumps([case.descriptors, case.points, case.level, sorted(case.layers), case.seed]).encode())
    h.update(json.dumps(rng.bit_generator.state, sort_keys=True).encode())
    if view is not None:
        h.update(json.dumps(view.bit_generator.state, sort_keys=True).encode())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_case_is_bit_for_bit_unchanged(name: str) -> None:
    assert fingerprint(*CASES[name]) == EXPECTED[name]
