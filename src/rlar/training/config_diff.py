"""Which config keys may change between two runs that compute the same thing, and where two configs differ.

One rule for both users: resuming a run (:mod:`rlar.training.run` refuses a changed config) and the experiment
runner (:mod:`rlar.experiments.runner`, which re-uses a finished run only when its config agrees). Torch-free, so
the runner and the CLI can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

#: Settings that may differ between a run and its resumption (and between a finished run and the grid that would
#: train it again) without changing what is computed, the one list both users read (issue 23: the runner ignored
#: ``training.cpu_threads`` while the trainer's resume refused it):
#:
#: - ``training.device``, ``data.num_workers``, ``output``: where and how fast, not what;
#: - ``training.cpu_threads``: torch's intra-op thread count; the same computation (at most last-bit float
#:   differences in reductions, as between two machines), and the experiment runner sets it per worker.
#:
#: The runner also ignores ``data.split_file`` (:data:`rlar.experiments.runner.IGNORED_KEYS`): every run of a grid
#: reads the grid's one split file, whose path changes when the folder moves; a resumed run must name the same one.
RESUME_FREE_KEYS: frozenset[tuple[str, ...]] = frozenset({
    ("training", "device"), ("data", "num_workers"), ("output",), ("training", "cpu_threads"),
})


def config_difference(old: Any, new: Any, path: tuple[str, ...] = (),
                      ignored: Collection[tuple[str, ...]] = RESUME_FREE_KEYS) -> tuple[str, ...] | None:
    """First key path where two plain config dicts differ, skipping the ``ignored`` paths; None if they agree.

    A key missing on one side counts as ``None`` there, so a section added with a non-None default is a
    difference: pass configs through today's schema first (:func:`rlar.training.config.validate_config`).
    """
    if path in ignored:
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = config_difference(old.get(key), new.get(key), (*path, str(key)), ignored)
            if found is not None:
                return found
        return None
    return None if old == new else path


__all__ = ["RESUME_FREE_KEYS", "config_difference"]
