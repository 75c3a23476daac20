"""Imports run downwards only: no module of rlar imports one of a higher layer (issue 22).

:data:`LAYERS` is THE definition of the layer order (docs/architecture.md shows the same table). The check reads
the source with ``ast`` and imports nothing, so every import counts: at module level, inside functions and under
``TYPE_CHECKING``. A module may import from its own layer and from the ones below it.

Point it at another tree (an older commit, a branch) from the command line; it prints each upward import and
exits 1 when one of them is not in :data:`PENDING`::

    git archive <commit> src/rlar | tar -x -C /tmp/old && python tests/test_import_layers.py /tmp/old/src/rlar
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rlar"

#: The layers, bottom first: (name, the packages and modules in it). A module belongs to the entry that names it
#: or its nearest enclosing package; ``rlar`` itself (the package root, ``__version__``) is the ground floor.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground floor", ("rlar", "rlar.acr", "rlar.errors", "rlar._optional", "rlar.environment", "rlar.tasks",
                      "rlar.prediction", "rlar.runs")),
    ("data", ("rlar.data",)),
    ("radiomics", ("rlar.radiomics",)),
    ("models and losses", ("rlar.models", "rlar.losses")),
    ("strategies", ("rlar.strategies",)),
    ("training and evaluation", ("rlar.training", "rlar.evaluation")),
    ("inference", ("rlar.inference",)),
    ("experiments", ("rlar.experiments",)),
    ("reporting", ("rlar.reporting",)),
    ("serving", ("rlar.serving",)),
    ("cli", ("rlar.cli",)),
)

#: Upward imports tolerated for now, each naming its fix: (importing module, imported module) -> the fix. Every entry
#: must still occur (a fixed one has to leave this list) and no other may appear. Empty: no module imports upward.
PENDING: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Upward:
    """One import of a higher layer: where it is and what it reaches."""

    module: str
    line: int
    imported: str
    module_layer: str
    imported_layer: str

    def __str__(self) -> str:
        return (f"{self.module} (layer '{self.module_layer}') line {self.line} imports {self.imported} "
                f"(layer '{self.imported_layer}')")


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of ``module``'s layer: the longest listed name that is the module or a package
    enclosing it (the root ``rlar`` only as itself). KeyError for a module of no layer."""
    best: tuple[int, int] | None = None  # (length of the matching name, layer index)
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            encloses = name != "rlar" and module.startswith(name + ".")
            if (module == name or encloses) and (best is None or len(name) > best[0]):
                best = (len(name), index)
    if best is None:
        raise KeyError(f"{module} belongs to no layer: add it (or its package) to LAYERS in {Path(__file__).name}")
    return best[1]


def module_name(path: Path, package: Path) -> str:
    """``rlar.inference.outputs`` for ``<package>/inference/outputs.py``; a package by its ``__init__.py``."""
    parts = ["rlar", *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every rlar module ``tree`` imports, anywhere in the file.

    ``from M import n`` imports the module ``M.n`` where that is a module of the package (``from rlar import
    environment``), else ``M``; relative imports are resolved against ``module``.
    """
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package_parts[:len(package_parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if candidate in known else base))
    unique = dict.fromkeys(found)  # one entry per module and line, however many names the line imports
    return [(line, name) for line, name in unique if name == "rlar" or name.startswith("rlar.")]


def upward_imports(package: Path = PACKAGE) -> list[Upward]:
    """Every import in the tree at ``package`` (a ``src/rlar`` folder) of a module of a higher layer."""
    files = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    upward: list[Upward] = []
    for module, path in files.items():
        tree = ast.parse(path.read_bytes(), filename=str(path))
        own = layer_of(module)
        for line, imported in imported_modules(tree, module, path.name == "__init__.py", set(files)):
            theirs = layer_of(imported)
            if theirs > own:
                upward.append(Upward(module, line, imported, LAYERS[own][0], LAYERS[theirs][0]))
    return upward


def test_no_module_imports_a_higher_layer() -> None:
    new = [str(found) for found in upward_imports() if (found.module, found.imported) not in PENDING]
    assert not new, "imports of a higher layer (move the function down, or pass the value in):\n" + "\n".join(new)


def test_every_pending_upward_import_still_exists() -> None:
    present = {(found.module, found.imported) for found in upward_imports()}
    fixed = [f"{module} -> {imported}" for module, imported in PENDING if (module, imported) not in present]
    assert not fixed, f"no longer imported upwards: remove from PENDING: {fixed}"


def test_every_module_belongs_to_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path, PACKAGE))  # raises KeyError naming the module


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_check_names_an_upward_import_wherever_it_is_written(tmp_path: Path) -> None:
    package = tmp_path / "rlar"
    _write(package, "__init__.py", "")
    _write(package, "environment.py", "")
    _write(package, "cli/__init__.py", "")
    _write(package, "cli/common.py", "from rlar import environment\n")  # downwards: allowed
    _write(package, "data/__init__.py", "")
    _write(package, "data/files.py", "import rlar.data.io\n")  # its own layer: allowed
    _write(package, "data/io.py", "def f():\n    from rlar.training.run import x\n")  # inside a function
    _write(package, "inference/__init__.py", "")
    _write(package, "inference/outputs.py", "from rlar.cli.common import probe_folder\n")  # the example
    _write(package, "training/__init__.py", "")
    _write(package, "training/run.py", "from ..serving import app\n")  # relative
    _write(package, "serving/__init__.py", "")
    _write(package, "serving/app.py", "")

    found = {(u.module, u.imported, u.module_layer, u.imported_layer) for u in upward_imports(package)}

    assert found == {
        ("rlar.data.io", "rlar.training.run", "data", "training and evaluation"),
        ("rlar.inference.outputs", "rlar.cli.common", "inference", "cli"),
        ("rlar.training.run", "rlar.serving.app", "training and evaluation", "serving"),
    }
    message = str(next(u for u in upward_imports(package) if u.module == "rlar.inference.outputs"))
    assert message == ("rlar.inference.outputs (layer 'inference') line 1 imports rlar.cli.common (layer 'cli')")


def test_the_layer_table_is_the_one_in_docs_architecture() -> None:
    """docs/architecture.md's section "## Layers" lists them bottom to top as ``1. **name**: `package`, ...``
    lines; they must be :data:`LAYERS`, in the same order."""
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    documented = []
    for line in section.splitlines():
        number, sep, rest = line.partition(". **")
        if number.isdigit() and sep:
            name, _, names = rest.partition("**: ")
            documented.append((name, tuple(n.strip(" `") for n in names.split(","))))
    assert documented == [(name, names) for name, names in LAYERS]


if __name__ == "__main__":
    found = upward_imports(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE)
    new = [u for u in found if (u.module, u.imported) not in PENDING]
    for upward in found:
        print(upward, "" if upward in new else "[pending]")
    print(f"{len(found)} upward import(s), {len(new)} not pending")
    sys.exit(1 if new else 0)
