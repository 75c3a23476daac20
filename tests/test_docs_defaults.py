"""The docs' default tables, value by value against the option models that hold the defaults.

docs/strategies.md (each method's ``Options``), docs/models.md (each backbone's options and ``NetworkOptions``),
docs/data-pipeline.md (``AugmentOptions``). A cell lists options as ``name value`` (``name (value)`` in the
backbone table); a trailing remark in parentheses is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Set
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from rlar.data.augment import AugmentOptions
from rlar.models import BACKBONES, NetworkOptions
from rlar.strategies import STRATEGIES

DOCS = Path(__file__).resolve().parents[1] / "docs"
NAME = re.compile(r"`(\w+)`")
CLOSE = {"(": ")", "[": "]", "{": "}"}

#: Options of a model that its docs row does not name yet (reported; the doc's owner adds them, then this empties).
UNDOCUMENTED: dict[str, set[str]] = {}


def _rows(doc: str, min_cells: int) -> dict[str, list[str]]:
    """``| `name` | ... |`` rows of ``doc`` with at least ``min_cells`` cells, by their first cell's name."""
    rows = {}
    for line in (DOCS / doc).read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= min_cells:
            rows[cells[0].strip("`")] = cells
    return rows


def _leading_value(text: str) -> str:
    """The value at the start of ``text``: a bracketed expression, a quoted string or one word."""
    text = text.strip()
    if not text:
        return ""
    if text[0] in CLOSE:
        depth = 0
        for i, char in enumerate(text):
            depth += char in CLOSE
            depth -= char in CLOSE.values()
            if depth == 0:
                return text[: i + 1]
    if text[0] == '"':
        return text[: text.index('"', 1) + 1]
    return re.split(r"[\s,]", text, maxsplit=1)[0]


def documented(cell: str, wrapped: bool = False) -> dict[str, Any]:
    """``{option: value}`` of a table cell (``wrapped``: values are written in parentheses after the name)."""
    out: dict[str, Any] = {}
    matches = list(NAME.finditer(cell))
    for match, after in zip(matches, [*matches[1:], None][: len(matches)], strict=True):
        text = cell[match.end(): after.start() if after else len(cell)]
        value = _leading_value(text)
        if wrapped and value.startswith("("):
            value = _leading_value(value[1:-1])
        out[match.group(1)] = _parse(value)
    return out


def _parse(text: str) -> Any:
    if text.startswith("("):  # a tuple, written as in Python
        text = "[" + text[1:-1] + "]"
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)  # 1e-12 (YAML 1.1 reads it as a string)
        except ValueError:
            return value
    return value


def _plain(value: Any) -> Any:
    """A default as the docs write it: tuples as lists."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    return {name: _plain(field.get_default(call_default_factory=True)) for name, field in model.model_fields.items()}


def _check(where: str, model: type[BaseModel], written: dict[str, Any], undocumented: Set[str] = frozenset()) -> None:
    truth = defaults(model)
    unknown = sorted(set(written) - set(truth))
    assert not unknown, f"{where}: names {unknown}, which are not options of {model.__name__}"
    wrong = {k: (v, truth[k]) for k, v in written.items() if v != truth[k] or isinstance(v, bool) != isinstance(truth[k], bool)}
    assert not wrong, f"{where}: documented default != the model's default: {wrong}"
    missing = sorted(set(truth) - set(written) - undocumented)
    assert not missing, f"{where}: options {missing} have no documented default"


def test_the_parser_reads_every_spelling() -> None:
    cell = ('`a` {} (x -> y, default 1), `b` "channel", `c` null (= [representation]), `d` 1e-12, `e` (0.9, 1.1), '
            '`f` [], `g` auto, `h` true')
    assert documented(cell) == {"a": {}, "b": "channel", "c": None, "d": 1e-12, "e": [0.9, 1.1], "f": [], "g": "auto",
                                "h": True}
    assert documented("`x` ([16, 32]), `y` (null), `z` (0.2)", wrapped=True) == {"x": [16, 32], "y": None, "z": 0.2}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_table(name: str) -> None:
    rows = _rows("strategies.md", 3)
    assert name in rows, f"docs/strategies.md has no table row for '{name}'"
    _check(f"docs/strategies.md row '{name}'", STRATEGIES[name].Options, documented(rows[name][2]),
           UNDOCUMENTED.get(name, set()))


def test_undocumented_list_is_current() -> None:
    rows = _rows("strategies.md", 3)
    for name, options in UNDOCUMENTED.items():
        still = options - set(documented(rows[name][2]))
        assert still == options, f"docs/strategies.md now documents {sorted(options - still)}: drop from UNDOCUMENTED"


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_table(name: str) -> None:
    row = _rows("models.md", 7)[name]
    written = {} if row[4] == "none" else documented(row[4], wrapped=True)
    _check(f"docs/models.md row '{name}'", BACKBONES[name].options, written)


def test_network_options_table() -> None:
    rows = _rows("models.md", 3)
    written = {name: _parse(_leading_value(cells[1])) for name, cells in rows.items() if name in NetworkOptions.model_fields}
    _check("docs/models.md network options", NetworkOptions, written)


def test_augmentation_table() -> None:
    text = (DOCS / "data-pipeline.md").read_text(encoding="utf-8")
    table = text[text.index("## The augmentations"):]
    table = table[: table.index("\n\n", table.index("|---"))]
    rows = [line for line in table.splitlines() if line.startswith("|") and not line.startswith("|---")][1:]
    written: dict[str, Any] = {}
    for line in rows:
        for cell in line.strip().strip("|").split("|")[1:3]:
            written.update(documented(cell))
    truth = defaults(AugmentOptions)
    # Two ranges are written as the distribution they draw from.
    assert f"offset U(-{truth['max_brightness']}, {truth['max_brightness']})" in table
    assert f"sigma U(0, {truth['max_speckle']})" in table
    _check("docs/data-pipeline.md augmentation table", AugmentOptions, written,
           {"max_brightness", "max_speckle", "targets", "target_safe_fraction"})
    assert f"`target_safe_fraction` ({truth['target_safe_fraction']})" in text
    assert f'`"{truth["targets"]}"` (default' in text
