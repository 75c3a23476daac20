"""Import optional dependencies with an error that says how to install them (MONAI's optional_import idea)."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str = "test", purpose: str = "") -> ModuleType:
    """Import ``module`` or raise ImportError naming the pip command that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only where the package is missing
        why = f" (needed for {purpose})" if purpose else ""
        raise ImportError(
            f"optional dependency '{module}' is not installed{why}; install it with: pip install -e '.[{extra}]'"
        ) from exc
