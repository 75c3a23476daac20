"""Figures and tables a person reads after training.

- :mod:`~rlar.reporting.curves`: training curves of one or more run folders (``curves.png``);
- :mod:`~rlar.reporting.collect`, :mod:`~rlar.reporting.tables`, :mod:`~rlar.reporting.stats`,
  :mod:`~rlar.reporting.figures`, :mod:`~rlar.reporting.report`: ``rlar report`` on a grid folder written by
  ``rlar experiment`` (the paper's Table 1 layout, paired tests, plots). Import those modules directly; this
  package only re-exports the curves API, so that importing it stays light.
"""

from rlar.reporting.curves import PANELS, make_figure, plot_runs, read_log

__all__ = ["PANELS", "make_figure", "plot_runs", "read_log"]
