"""Dataset adapters, one file per layout, looked up by name.

Adding a source: write ``sources/<name>.py`` with a :class:`Source` subclass and add one line to ``_REGISTRY``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from rlar.data.sources.base import Source
from rlar.errors import ConfigError

# name -> "module:ClassName"; imported lazily so that e.g. h5py is loaded only for the AIMI source.
_REGISTRY: dict[str, str] = {
    "ddti": "rlar.data.sources.ddti:DDTISource",
    "thyroidxl": "rlar.data.sources.thyroidxl:ThyroidXLSource",
    "aimi": "rlar.data.sources.aimi:AIMISource",
    "folder": "rlar.data.sources.folder:FolderSource",
    "phantom": "rlar.data.sources.phantom:PhantomSource",
}

SOURCE_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_source_class(name: str) -> type[Source]:
    if name not in _REGISTRY:
        raise ConfigError("source", f"unknown source '{name}'; choose one of {', '.join(SOURCE_NAMES)}")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_source(name: str, root: str | Path | None = None, **options: Any) -> Source:
    """Open a data source by name. ``root`` may be None only for the synthetic phantom."""
    return get_source_class(name)(root, **options)


__all__ = ["Source", "SOURCE_NAMES", "get_source_class", "open_source"]
