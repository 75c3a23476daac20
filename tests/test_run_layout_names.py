"""The run-folder layout is spelled in one module: :mod:`rlar.runs` (issue 21 item 2).

Rule checked here: outside ``src/rlar/runs.py``, no string literal in ``src/rlar`` names a run-folder file or
folder (``metrics.json``, ``checkpoints``, ``best.pt`` ... :data:`LAYOUT_NAMES`), either as the whole literal
(``run_dir / "metrics.json"``, ``Path("checkpoints")``) or as one component of a path-like literal without
whitespace (``"checkpoints/best.pt"``, ``"*/seed*/fold*/metrics.json"``). Such code imports the constant from
``rlar.runs`` instead (``run_dir / METRICS_FILE``, ``checkpoint_file(run_dir, BEST)``).

Allowed, because they build no path: docstrings, the literal parts of f-strings (messages such as
``f"has no {LOG_FILE}"`` or ``f"... (checkpoints/{LAST})"``), and text with whitespace in it (help texts and
messages such as ``"continue from <out>/checkpoints/last.pt"``).

Names used with another meaning elsewhere are not checked: ``truth`` / ``external`` (also phantom options and
labels), ``predictions.csv`` (also ``rlar predict``'s and ``rlar evaluate``'s own output file) and ``curves.png``
(also ``rlar plot``'s default output in the current folder); their run-folder meaning still lives in rlar.runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

from rlar import runs

SRC = Path(runs.__file__).resolve().parent
LAYOUT_NAMES = frozenset({
    runs.CONFIG_FILE, runs.SPLITS_FILE, runs.LOG_FILE, runs.METRICS_FILE, runs.PREDICTIONS_FILE,
    runs.CHECKPOINT_DIR, runs.BEST, runs.LAST, runs.TENSORBOARD_DIR, runs.COMPETITION_FILE, runs.SUMMARY_FILE,
    runs.ERROR_FILE, runs.GRID_FILE, runs.NODULE_PREDICTIONS_FILE,
})


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _names_a_layout_path(text: str) -> bool:
    if text in LAYOUT_NAMES:
        return True
    return not any(c.isspace() for c in text) and any(part in LAYOUT_NAMES for part in text.split("/"))


def layout_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every string literal of ``source`` that spells a run-folder name (the rule above)."""
    tree = ast.parse(source)
    skip = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(part) for part in node.values)
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
                  and _names_a_layout_path(node.value))


def test_the_rule_finds_path_building_and_spares_messages() -> None:
    code = '''
"""Module docstring naming metrics.json and checkpoints/best.pt."""
from pathlib import Path
A = Path("x") / "metrics.json"
B = Path("checkpoints")
C = "*/seed*/fold*/log.csv"
D = f"has no {A} (checkpoints/best.pt)"
E = "continue from <out>/checkpoints/last.pt"
F = "grid.json"
'''
    assert [text for _, text in layout_literals(code)] == ["metrics.json", "checkpoints", "*/seed*/fold*/log.csv",
                                                          "grid.json"]


def test_only_rlar_runs_spells_the_run_folder_layout() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.resolve() == Path(runs.__file__).resolve():
            continue
        for line, text in layout_literals(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(SRC.parent)}:{line}: {text!r}")
    assert not found, ("run-folder names spelled outside rlar/runs.py (import the constant from rlar.runs):\n"
                       + "\n".join(found))
