"""Dataset adapters, one file per layout, looked up by name in :data:`SOURCES`.

Adding a source: write ``sources/<name>.py`` with a :class:`Source` subclass (its ``__init__(root, ...)``
keyword arguments are its options) and add one line to :data:`SOURCES`. ``open_source``, the CLI's source
choices and docs/data-formats.md (a test checks it has a row per source) all read this one table.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rlar.data.sources.aimi import AIMISource
from rlar.data.sources.base import Source
from rlar.data.sources.ddti import DDTISource
from rlar.data.sources.folder import FolderSource
from rlar.data.sources.phantom import PhantomSource
from rlar.data.sources.thyroidxl import ThyroidXLSource
from rlar.errors import ConfigError, config_error_from

#: name -> Source class: the one registry of dataset layouts.
SOURCES: dict[str, type[Source]] = {
    "ddti": DDTISource,
    "thyroidxl": ThyroidXLSource,
    "aimi": AIMISource,
    "folder": FolderSource,
    "phantom": PhantomSource,
}


def get_source_class(name: str) -> type[Source]:
    """The class registered as ``name``; ConfigError (key ``data.source``) naming the choices otherwise."""
    if name not in SOURCES:
        close = difflib.get_close_matches(str(name), list(SOURCES), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError("data.source", f"unknown source '{name}'; {hint}choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


def validate_source_options(name: str, raw: dict[str, Any]) -> BaseModel:
    """Check ``raw`` options against the source's option model; ConfigError naming ``data.options.<key>``.

    Unknown keys get a "did you mean" suggestion and the list of accepted options (:func:`rlar.errors.config_error_from`).
    """
    cls = get_source_class(name)
    model = cls.options_model()
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise config_error_from(exc, "data.options", model=model, what=f"the {name} source") from None


def open_source(name: str, root: str | Path | None = None, **options: Any) -> Source:
    """Open a data source by name. ``root`` may be None only for the synthetic phantom.

    Options are validated first (:func:`validate_source_options`); errors are ConfigError / DataError.
    """
    validated = validate_source_options(name, options)
    cls = get_source_class(name)
    cls.check_root(root)  # before the constructor, which may derive paths from the root
    # Pass only the keys the user gave (validated and converted); the constructor keeps its own defaults.
    given = {key: getattr(validated, key) for key in options}
    return cls(root, **given)


def source_names() -> list[str]:
    """The registered source names, read at call time (for CLI choices and docs)."""
    return list(SOURCES)


__all__ = [
    "SOURCES",
    "Source",
    "get_source_class",
    "open_source",
    "source_names",
    "validate_source_options",
]
