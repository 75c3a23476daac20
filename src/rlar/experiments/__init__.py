"""Experiment grids: methods x folds x seeds (and ablation presets) trained into one folder, for ``rlar report``.

``rlar.experiments.grid`` reads grid files and expands them into runs; ``runner`` runs them (skip, resume, lock,
workers, shards); ``presets`` holds the named ablations; ``readers`` the annotator-study levels; ``predictions``
writes the per-image test, external-source and phantom-truth predictions the report reads.
"""

from rlar.experiments.arms import Arm, TableSpec
from rlar.experiments.grid import ExpandedGrid, GridConfig, RunSpec, expand, load_grid
from rlar.experiments.presets import PRESETS
from rlar.experiments.runner import RunResult, run_grid

__all__ = ["PRESETS", "Arm", "ExpandedGrid", "GridConfig", "RunResult", "RunSpec", "TableSpec", "expand", "load_grid",
           "run_grid"]
