"""Where a run ran: recorded in every run's ``metrics.json`` (``run.environment``).

Floating-point results depend on more than the config and the seed: the same config trained on another CPU (or with
another library build) gives a different first-epoch loss in the last digits, and training amplifies that like a
change of seed (measured in docs/recipes.md). On one machine, reruns are bitwise identical. So a run records what it
ran on, and results that mix machines can be told apart.

This module is the record a training run writes; choosing the run's environment (devices, CPU threads, write checks
of output folders) is :mod:`rlar.environment`, on the ground floor.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import numpy as np
import torch

#: CPU features whose presence changes which kernels oneDNN/MKL pick (and so the rounding of results).
CPU_FEATURES: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """(model name, the :data:`CPU_FEATURES` it has) from ``/proc/cpuinfo``; elsewhere the platform's processor."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = platform.machine(), set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == platform.machine():
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, [f for f in CPU_FEATURES if f in flags]


def run_environment(device: torch.device) -> dict[str, object]:
    """Host, CPU (model and kernel-relevant features), GPU, thread count and library versions of this process."""
    import monai

    model, features = cpu_description()
    environment: dict[str, object] = {
        "host": socket.gethostname(),
        "cpu": model,
        "cpu_features": features,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "monai": monai.__version__,
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        environment["gpu"] = torch.cuda.get_device_name(device)
    return environment


__all__ = ["CPU_FEATURES", "cpu_description", "run_environment"]
