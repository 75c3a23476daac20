"""The built-in synthetic thyroid ultrasound phantom: images with known ACR descriptors, and simulated readers.

- :mod:`.render`: ``render_case(rng, size, descriptors)`` -> :class:`PhantomCase` (image, true mask, descriptors,
  ACR points and level).
- :mod:`.acr`: ACR TI-RADS 2017 points (``acr_points``) and levels (``acr_level``).
- :mod:`.readers`: ``ReaderModel`` (one annotator's style) and ``default_panel`` (several styles).

The data source adapter lives in :mod:`rlar.data.sources.phantom` (``open_source("phantom")``).
"""

from rlar.data.phantom.acr import ACR_LEVELS, ACR_POINTS, acr_level, acr_points
from rlar.data.phantom.readers import ReaderModel, default_panel
from rlar.data.phantom.render import (
    DESCRIPTOR_PRIOR,
    PHANTOM_VALUES,
    PhantomCase,
    render_case,
    sample_descriptors,
    validate_descriptors,
)

__all__ = [
    "ACR_LEVELS",
    "ACR_POINTS",
    "DESCRIPTOR_PRIOR",
    "PHANTOM_VALUES",
    "PhantomCase",
    "ReaderModel",
    "acr_level",
    "acr_points",
    "default_panel",
    "render_case",
    "sample_descriptors",
    "validate_descriptors",
]
