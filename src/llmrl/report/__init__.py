"""Learning curves and reports from training run folders (``llmrl plot``)."""

from llmrl.report.plot import (
    Run,
    RunFormatError,
    Series,
    find_runs,
    load_references,
    load_run,
    metric_curve,
    plot_command,
    plot_losses,
    plot_runs,
    rolling_mean,
    series,
    write_report,
)

__all__ = [
    "Run",
    "RunFormatError",
    "Series",
    "find_runs",
    "load_references",
    "load_run",
    "metric_curve",
    "plot_command",
    "plot_losses",
    "plot_runs",
    "rolling_mean",
    "series",
    "write_report",
]
