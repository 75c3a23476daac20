"""The run's environment, on the ground floor: devices, writable-folder checks, thread settings.

Every layer (training, evaluation, inference, serving, the CLI) needs these; keeping them here, importing only
torch, the standard library and :mod:`rlar.errors`, means none of them reaches sideways into ``rlar.training`` or up
into ``rlar.cli`` to find them. The device names are spelled once, in :data:`Device`.
"""

from __future__ import annotations

import warnings
from typing import Literal, get_args

import torch

from rlar.errors import ConfigError

#: The device names a user may ask for; ``auto`` picks cuda > mps > cpu (:func:`resolve_device`).
Device = Literal["auto", "cpu", "cuda", "mps"]
#: The same names as a tuple, for ``argparse`` choices and messages (derived from :data:`Device`, not respelt).
DEVICES: tuple[Device, ...] = get_args(Device)
#: The default of training (``training.device``) and of ``rlar evaluate``: the fastest device present.
DEFAULT_DEVICE: Device = "auto"
#: The default of ``rlar predict`` and ``rlar serve``: one image at a time gains little from a GPU, and a shared
#: GPU (held by a training run) is then left alone unless the user asks for it.
INFERENCE_DEVICE: Device = "cpu"


def resolve_device(name: str = DEFAULT_DEVICE, key: str = "training.device") -> torch.device:
    """The torch device for ``name`` (one of :data:`DEVICES`).

    ``auto`` picks cuda > mps > cpu; an explicit device that is not available is an error, not a fallback.
    ``key`` is the config key or option the name came from (``--device``), named in the ConfigError.
    """
    if name not in DEVICES:
        raise ConfigError(key, f"unknown device '{name}'; choose one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError(key, "cuda requested but torch sees no CUDA device")
    if name == "mps" and not mps:
        raise ConfigError(key, "mps requested but the MPS backend is not available")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on a CPU whose bf16 matmuls are native (AVX512-BF16 or AMX), where CPU autocast can pay off."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if callable(check))


def cpu_autocast_bf16() -> bool:
    """``optim.cpu_amp`` resolved on this machine: bf16 where it is native, float32 with a warning elsewhere."""
    if cpu_has_native_bf16():
        return True
    # stacklevel 3: the warning points at the code that built the trainer, not at the trainer itself.
    warnings.warn("optim.cpu_amp: this CPU has no native bf16 (AVX512-BF16/AMX); training in float32", stacklevel=3)
    return False
