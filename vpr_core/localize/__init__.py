"""The per-frame pipeline: ``Localizer`` turns an image into an ``Estimate`` (position with
covariance and confidence) through the global descriptor, the top-K search, the re-ranker
and the estimate; ``LocalizerConfig`` holds every knob and generates the CLI arguments and
node parameters. ``outputs`` gives the exact numbers a NavSatFix and a pose carry, shared by
the node and the out-bags."""

from .._lazy import lazy_exports

_NAMES = {
    "Localizer": ".localizer",
    "Estimate": ".localizer",
    "Match": ".localizer",
    "LocalizerConfig": ".config",
    "Index": ".retrieval",
    "TorchIndex": ".retrieval",
    "make_index": ".retrieval",
    "INDEX_KINDS": ".retrieval",
    "RETRIEVALS": ".retrieval",
    "ESTIMATE_DEFAULTS": ".estimate",
    "estimate_position": ".estimate",
    "fix_fields": ".outputs",
    "pose_fields": ".outputs",
    "fit_logistic": ".calibration",
    "predict": ".calibration",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
