"""Shipped configs state only what differs: no key of src/rlar/configs/*.yaml (base or size entry) may be removable
without changing the resolved config of some size, byte for byte (a grid compares resolved configs to decide
whether its finished runs still count, so the file may change only where the resolved values do not)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from rlar.errors import ConfigError
from rlar.training.config import config_to_dict, resolve_raw, shipped_config_dir, shipped_config_names, validate_config


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the non-mapping values and of the empty mappings of ``tree``."""
    out: list[tuple[str, ...]] = []
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, path))
        else:
            out.append(path)
    return out


def _without(tree: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``tree`` without the key at ``path`` (and without mappings that this leaves empty)."""
    out = copy.deepcopy(tree)
    nodes = [out]
    for part in path[:-1]:
        nodes.append(nodes[-1][part])
    del nodes[-1][path[-1]]
    for node, part in zip(reversed(nodes[:-1]), reversed(path[:-1]), strict=True):
        if node[part]:
            break
        del node[part]
    return out


def _resolved(raw: dict[str, Any], size: str) -> str:
    """The resolved config of ``size`` as JSON text (key order kept), or the error that refuses it."""
    try:
        return json.dumps(config_to_dict(validate_config(resolve_raw(raw, size=size))))
    except ConfigError as err:
        return f"error: {err}"


def _sizes(raw: dict[str, Any]) -> list[str]:
    return list(raw.get("sizes") or {})


def _raw(name: str) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((shipped_config_dir() / f"{name}.yaml").read_text())
    return raw


@pytest.mark.parametrize("name", shipped_config_names())
def test_no_shipped_key_restates_what_the_config_would_be_without_it(name: str) -> None:
    raw = _raw(name)
    sizes = _sizes(raw)
    assert sizes, f"{name}.yaml defines no sizes"
    resolved = {size: _resolved(raw, size) for size in sizes}
    redundant = []
    base = {k: v for k, v in raw.items() if k != "sizes"}
    for path in _leaves(base):
        if path == ("size",):
            continue  # selects a size; without it no size would be applied (checked by the resolution itself)
        smaller = _without(raw, path)
        if all(_resolved(smaller, size) == resolved[size] for size in sizes):
            redundant.append(".".join(path))
    for size in sizes:
        for path in _leaves(raw["sizes"][size]):
            if _resolved(_without(raw, ("sizes", size, *path)), size) == resolved[size]:
                redundant.append(f"sizes.{size}." + ".".join(path))
    assert not redundant, (f"{name}.yaml restates values the resolved config has without them (the code's defaults, "
                           f"or the file's base values in a size entry); remove: {', '.join(redundant)}")
