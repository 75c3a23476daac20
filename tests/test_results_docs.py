"""Results pages lead with the answer (issue 22, item 8): every hand-written ``docs/results/<folder>/README.md``.

The convention, checked page by page:

1. Line 1 is the title, a ``# `` heading that asks (or names) the page's question.
2. Within the first ``ANSWER_WITHIN`` lines a paragraph starts with the bold lead ``**Answer.**``: the verdict in two
   to five sentences, with the intervals or spread measured on the page. A page whose study is unfinished says so
   there (``**Answer.** No verdict yet: ...``) rather than leaving the lead out.
3. The main table(s) come next: at least one Markdown table between the answer and the method section; then the
   figures (a ``## Figures`` section, where the page has one, also sits between the two).
4. The method section is the heading ``## How it was run``, after the answer: recipe, commands, machines, dates,
   wall times and caveats go there, at the end of the page.
5. The lab notebook's words appear only from ``## How it was run`` on: ``Machine``/``Machines`` capitalised (the
   "Machine and cost" lead; a lowercase "machine" may appear earlier, because a machine's effect on training can be
   a finding, as in the DDTI two-machine replication), "wall time" (``wall_time_s`` too), "sitting(s)", "UTC" and
   "<n>-core".
6. Every relative link resolves: the file exists and, for a Markdown target, its ``#anchor`` names a heading.

``PENDING`` lists the pages that do not follow the convention yet, each with a one-line reason. They are not skipped:
each runs as a strict expected failure, so it shows as ``xfailed`` in every run, and once its page follows the
convention the run fails (XPASS strict) until the entry is removed. Links (6) are checked on every page, pending
or not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
PAGES = sorted(RESULTS.glob("*/README.md"))

ANSWER_WITHIN = 15
ANSWER = "**Answer.**"
METHOD_HEADING = "## How it was run"
FIGURES_HEADING = "## Figures"
NOTEBOOK_WORDS = [
    re.compile(r"\bMachines?\b"),
    re.compile(r"wall[ _-]?times?", re.IGNORECASE),
    re.compile(r"\bsittings?\b", re.IGNORECASE),
    re.compile(r"\bUTC\b"),
    re.compile(r"\b\d+-core\b", re.IGNORECASE),
]

#: Pages written before the convention, by folder, with why they are not rewritten yet; remove an entry when its
#: page is rewritten (the strict xfail fails the run as soon as the page passes).
PENDING: dict[str, str] = {}

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _lines_outside_code(text: str) -> list[tuple[int, str]]:
    """``(index, line)`` of the lines of ``text`` that are not inside a fenced code block."""
    out, fenced = [], False
    for i, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((i, line))
    return out


def answer_first_problems(text: str) -> list[str]:
    """What in ``text`` breaks the convention of the module docstring (points 1-5); empty when it follows it."""
    lines = text.splitlines()
    prose = _lines_outside_code(text)
    problems = []
    if not lines or not lines[0].startswith("# "):
        problems.append("line 1 is not a '# ' title")
    answer = next((i for i, line in prose if line.startswith(ANSWER)), None)
    if answer is None or answer >= ANSWER_WITHIN:
        where = "missing" if answer is None else f"on line {answer + 1}"
        problems.append(f"no paragraph starting with {ANSWER!r} in the first {ANSWER_WITHIN} lines ({where})")
    method = next((i for i, line in prose if line.strip() == METHOD_HEADING), None)
    if method is None:
        problems.append(f"no {METHOD_HEADING!r} heading")
        return problems
    if answer is not None and method < answer:
        problems.append(f"{METHOD_HEADING!r} (line {method + 1}) comes before the answer (line {answer + 1})")
    start = answer if answer is not None else 0
    if not any(start < i < method and line.startswith("|---") for i, line in prose):
        problems.append(f"no Markdown table between the answer and {METHOD_HEADING!r}")
    figures = next((i for i, line in prose if line.strip() == FIGURES_HEADING), None)
    if figures is not None and not start < figures < method:
        problems.append(f"{FIGURES_HEADING!r} (line {figures + 1}) is not between the answer and the method")
    for i, line in enumerate(lines[:method]):
        for word in NOTEBOOK_WORDS:
            if hit := word.search(line):
                problems.append(f"line {i + 1}: {hit.group()!r} before {METHOD_HEADING!r}")
    return problems


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading's text."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for _, line in _lines_outside_code(markdown.read_text(encoding="utf-8"))
        if line.startswith("#")
    }


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or whose heading anchor in a Markdown file, does not exist."""
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        resolved = page.parent / path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def _param(page: Path) -> ParameterSet:
    folder = page.parent.name
    marks = [pytest.mark.xfail(strict=True, reason=PENDING[folder])] if folder in PENDING else []
    return pytest.param(page, id=folder, marks=marks)


def test_there_are_results_pages_and_pending_names_only_existing_pages_with_a_reason():
    assert PAGES, f"no README.md under {RESULTS}"
    folders = {page.parent.name for page in PAGES}
    assert set(PENDING) <= folders, f"PENDING names pages that do not exist: {sorted(set(PENDING) - folders)}"
    for folder, reason in PENDING.items():
        assert "issue 22" in reason, f"PENDING[{folder!r}] should name the issue it waits on"


@pytest.mark.parametrize("page", [_param(page) for page in PAGES])
def test_results_page_leads_with_the_answer(page: Path) -> None:
    problems = answer_first_problems(page.read_text(encoding="utf-8"))
    assert not problems, f"{page.relative_to(REPO)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=[page.parent.name for page in PAGES])
def test_results_page_links_resolve(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(REPO)}:\n  " + "\n  ".join(broken)


def test_the_convention_check_catches_a_notebook_page():
    """The checker itself: a page that opens with its machine and cost fails, the same page reordered passes."""
    answer = "**Answer.** No: Dice -0.010 ([-0.020, 0.001]).\n"
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    method = "## How it was run\n\n**Machine and cost.** 2 CPU cores; wall time 10 min over two sittings.\n"
    good = f"# Does it help?\n\n{answer}\n{table}\n## Figures\n\nnone\n\n{method}"
    assert answer_first_problems(good) == []
    notebook = f"# Does it help?\n\n{method}\n{answer}\n{table}"
    assert any("comes before the answer" in p for p in answer_first_problems(notebook))
    cost = "**Machine and cost.** 2 CPU cores; wall time 10 min over two sittings.\n"
    notebook = f"# Does it help?\n\n{cost}\n{answer}\n{table}\n## How it was run\n"
    problems = answer_first_problems(notebook)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "'Machine' before '## How it was run'",
        "'wall time' before '## How it was run'",
        "'sittings' before '## How it was run'",
    ]
    late = "# Does it help?\n\n" + "text\n" * ANSWER_WITHIN + f"\n{answer}\n{table}\n{method}"
    assert any("first 15 lines" in p for p in answer_first_problems(late))
    assert any("no Markdown table" in p for p in answer_first_problems(f"# Q?\n\n{answer}\n{method}"))
