"""What serving a live camera stream needs beside the Localizer, free of any middleware: a
newest-frame slot that never queues (older frames are counted as dropped), throttled
problem reports with a fixed severity per kind, health figures (rates, counts, per-stage
latency, an OK/WARN/ERROR verdict) and the debug view. The ROS node wires these to topics."""

from .._lazy import lazy_exports

_NAMES = {
    "LatestFrame": ".latest",
    "Health": ".health",
    "ProblemLog": ".health",
    "DebugView": ".debug_view",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
