"""Exceptions shared by every layer. Each carries enough context to act on without a traceback.

:func:`config_error_from` is the one translator of a pydantic ``ValidationError`` into a :class:`ConfigError`:
every validated section (the training config, strategy, backbone, source, augmentation and preset options, the
server limits) reports a bad value in the same words, under its full dotted key.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError


class RlarError(Exception):
    """Base class for errors raised deliberately by rlar."""


class DataError(RlarError):
    """A data item (file, record, label) cannot be used. Always names the item and the reason."""

    def __init__(self, item: str | Path, reason: str) -> None:
        self.item = str(item)
        self.reason = reason
        super().__init__(f"{self.item}: {reason}")


class ConfigError(RlarError):
    """A configuration value is invalid. Names the offending key."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        # A command-line option ('--port') is named as one: it is not a key of the config file.
        what = "option" if key.startswith("-") else "config key"
        super().__init__(f"{what} '{key}': {reason}")


class DataWarning(UserWarning):
    """A data item is used, but something about it is probably not what its author meant (e.g. its bit depth)."""


def config_error_from(
    err: ValidationError,
    key_prefix: str = "",
    *,
    model: type[BaseModel] | None = None,
    what: str | None = None,
    error_type: type[ConfigError] = ConfigError,
    unknown_type: type[ConfigError] | None = None,
) -> ConfigError:
    """The first error of a pydantic ``ValidationError`` as a ConfigError naming the full dotted key (one wording).

    key_prefix: where the validated mapping sits in the config (``"strategy.options.rlar"``; ``""`` for the root).
    model: the pydantic model that was validated; with it an unknown key ("extra_forbidden") gets a did-you-mean
        suggestion (difflib) and the list of the keys accepted at that place.
    what: names the owner of the keys in an unknown-key message (``"backbone 'compact'"``, ``"the ddti source"``).
    error_type / unknown_type: the ConfigError subclass to raise (``unknown_type`` for an unknown key, default
        ``error_type``).

    Wording: ``unknown key[ for <what>][; did you mean '<key>'?] (accepted: a, b, c)`` for an unknown key, else
    pydantic's message (its ``Value error, `` prefix dropped) with ``(got <input>)`` for a type or range error;
    ``; and N more error(s)`` when pydantic found more than one.
    """
    errors = err.errors()
    # A misspelt key usually also leaves a required one missing: the unknown key is the one to name.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    # Drop pydantic's union-branch labels (e.g. "literal['auto','none']", "function-after[...]") from the location.
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    key = ".".join(part for part in (key_prefix, ".".join(str(p) for p in loc)) if part) or "<config>"
    if first["type"] == "extra_forbidden":
        cls = unknown_type or error_type
        reason = "unknown key" + (f" for {what}" if what else "") + _accepted_keys(model, loc)
    else:
        cls = error_type
        reason = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] not in ("value_error", "assertion_error", "missing") and "input" in first:
            reason += f" (got {_short_repr(first['input'])})"
    if len(errors) > 1:
        reason += f"; and {len(errors) - 1} more error(s)"
    return cls(key, reason)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds directly or as ``X | None`` (None for anything else)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [m for m in map(_model_in, typing.get_args(annotation)) if m is not None]
        return found[0] if len(found) == 1 else None
    return None


def _section_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that holds the key at ``loc`` inside ``model`` (None past a free-form mapping)."""
    section: type[BaseModel] | None = model
    for part in loc[:-1]:
        if section is None:
            return None
        field = section.model_fields.get(str(part))
        section = _model_in(field.annotation) if field is not None else None
    return section


def _accepted_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """``"; did you mean 'optim.epochs'? (accepted: ...)"`` for a misspelt key at ``loc``, or ``""`` unknown model."""
    section = _section_at(model, loc) if model is not None and loc else None
    if section is None:
        return ""
    names = list(section.model_fields)
    parent = "".join(f"{p}." for p in loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), names, n=3, cutoff=0.6)
    hint = "; did you mean " + " or ".join(f"'{parent}{c}'" for c in close) + "?" if close else ""
    return f"{hint} (accepted: {', '.join(names) or 'none'})"
