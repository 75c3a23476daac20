"""The run's environment, on the ground floor: devices, writable-folder checks, CPU thread settings.

Every layer (training, evaluation, inference, serving, the CLI) needs these; keeping them here, importing only
torch, the standard library and :mod:`rlar.errors`, means none of them reaches sideways into ``rlar.training`` or up
into ``rlar.cli`` to find them. The device names are spelled once, in :data:`Device`.

torch is imported inside the functions that need it, not here: the training config, the data layer's file checks
and ``rlar --help`` read this module and must not pay for importing torch (a test checks it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from rlar.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

#: The device names a user may ask for; ``auto`` picks cuda > mps > cpu (:func:`resolve_device`).
Device = Literal["auto", "cpu", "cuda", "mps"]
#: The same names as a tuple, for ``argparse`` choices and messages (derived from :data:`Device`, not respelt).
DEVICES: tuple[Device, ...] = get_args(Device)
#: The default of training (``training.device``) and of ``rlar evaluate``: the fastest device present.
DEFAULT_DEVICE: Device = "auto"
#: The default of ``rlar predict`` and ``rlar serve``: the CPU, present on every machine, so the same command gives
#: the same result anywhere; a GPU is used only when asked for (``--device cuda`` or ``auto``).
INFERENCE_DEVICE: Device = "cpu"


def resolve_device(name: str = DEFAULT_DEVICE, key: str = "training.device") -> torch.device:
    """The torch device for ``name`` (one of :data:`DEVICES`).

    ``auto`` picks cuda > mps > cpu; an explicit device that is not available is an error, not a fallback.
    ``key`` is the config key or option the name came from (``--device``), named in the ConfigError.
    """
    import torch

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
    import torch

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


def why_not_writable(folder: str | Path) -> str | None:
    """Create ``folder`` if needed and write (then remove) a probe file in it: None when that worked, else the
    reason in the operating system's words (``Permission denied``, ``Not a directory`` ...).

    The one write check of the package: :func:`check_writable` (library callers, DataError) and
    :func:`rlar.data.files.probe_folder` (command-line options, ConfigError) word its answer for their audience.
    A probe file rather than ``os.access``: access() misses read-only mounts, full disks and ACLs.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, prefix=".rlar-write-check-")
    except OSError as exc:
        return str(exc.strerror or exc)
    os.close(handle)
    with contextlib.suppress(OSError):  # the probe proved the point; a file left behind is harmless
        os.unlink(name)
    return None


def check_writable(folder: str | Path, what: str = "output folder", remedy: str | None = None) -> Path:
    """Create ``folder`` and prove a file can be written there, before any long work starts.

    Raises a DataError naming the folder: "``what`` is not writable (reason)", then ``remedy`` (what the user
    can do, e.g. "choose another --out") when given. Returns the folder as a Path.
    """
    folder = Path(folder)
    reason = why_not_writable(folder)
    if reason is not None:
        raise DataError(folder, f"{what} is not writable ({reason})" + (f"; {remedy}" if remedy else ""))
    return folder


def set_cpu_threads(threads: int | None, key: str = "training.cpu_threads") -> None:
    """Set torch's intra-op CPU threads; None keeps torch's default.

    On a shared machine one thread is often fastest: more threads than free cores spin against each other.
    ``key`` is the config key or option the count came from (``--threads``), named in the ConfigError.
    """
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(key, f"must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
