"""Exceptions shared by every layer. Each carries enough context to act on without a traceback."""

from __future__ import annotations

from pathlib import Path


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
        super().__init__(f"config key '{key}': {reason}")


class DataWarning(UserWarning):
    """A data item is used, but something about it is probably not what its author meant (e.g. its bit depth)."""
