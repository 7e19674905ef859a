"""Measuring a map the way the robot uses it: Recall@N by the standard VPR protocol with
errors and per-stage latency, replay of a bag with its own fixes as ground truth (and an
out-bag with the estimates), fitting the confidence on a labelled run, and the plots
and one-screen report of each."""

from .._lazy import lazy_exports

_NAMES = {
    "evaluate": ".recall",
    "recalls": ".recall",
    "summarize": ".recall",
    "RECALL_NS": ".recall",
    "evaluate_bag": ".bag",
    "write_estimates_bag": ".bag",
    "BagEval": ".bag",
    "calibrate": ".calibrate",
    "plot_report": ".plots",
    "plot_trajectory": ".plots",
    "plot_reliability": ".plots",
    "print_report": ".report",
    "write_json": ".report",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
