"""Figures and tables a person reads after training: training curves of one or more run folders."""

from rlar.reporting.curves import PANELS, make_figure, plot_runs, read_log

__all__ = ["PANELS", "make_figure", "plot_runs", "read_log"]
