"""``LocalizerConfig``: every knob of the per-frame pipeline, with its CLI flag and ROS parameter.

The ``vpr`` arguments (``eval``, ``calibrate``) and the node's declared parameters are
generated from these fields, so names, choices and ranges are written once. The two
surfaces differ on purpose in one default, with its reason below: the re-ranker (the
robot gets the most accurate one; offline evaluation reports the plain ranking unless asked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import knob, validate
from ..errors import VprError
from ..models import GLOBAL_MODELS
from ..rerank import RERANKERS
from ..runtime.backends import BACKENDS
from ..runtime.extractor import device_knob
from .estimate import COVARIANCE_MODELS, ESTIMATE_DEFAULTS
from .retrieval import INDEX_KINDS, RETRIEVALS
from .temporal import TEMPORAL_DEFAULTS, TEMPORAL_FILTERS

__all__ = ["LocalizerConfig"]


@dataclass
class LocalizerConfig:
    """The per-frame pipeline: global model, search, re-ranking, estimate and the FIX threshold."""

    global_model: str = knob(
        "",
        "Expected global model; empty = the map's. A different one is refused at start-up.",
        type=str,
        choices=lambda: ["", *GLOBAL_MODELS.names()],
        registry=True,
        cli="--model",
        ros="global_model",
    )
    model_options: dict = knob(
        {},
        "Global-model option overrides, e.g. weights=PATH (the map's fingerprint must still match).",
        type=dict,
        cli="--set",
    )
    top_k: int = knob(
        10,
        "Candidates retrieved per frame (recalls are scored on 20).",
        type=int,
        range=(1, 1000),
        cli="--top-k",
        ros="top_k",
    )
    index: str = knob(
        "auto",
        "search index: auto (the map's stored IVF-PQ shards when it has them, else exact), flat (exact), or ivf/ivfpq "
        "trained at load.",
        type=str,
        choices=lambda: INDEX_KINDS,
    )
    device: str = device_knob(cli="--device", ros="device")
    backend: str = knob(
        "auto",
        "Global model runtime: auto (TensorRT FP16 on CUDA with an on-disk engine cache, else eager), tensorrt, "
        "onnxruntime or eager; each fallback is logged and reported.",
        type=str,
        choices=lambda: BACKENDS,
        cli="--backend",
        ros="backend",
    )
    retrieval: str = knob(
        "auto",
        "Search: auto (faiss GPU, else torch top-k on the GPU when the map fits, else faiss CPU), faiss or torch.",
        type=str,
        choices=lambda: RETRIEVALS,
        cli="--retrieval",
        ros="retrieval",
    )
    reranker: str = knob(
        "none",
        "Re-ranker of the global top-K. auto: the most accurate one the map's features allow (dhe+lighterglue > "
        "lighterglue at K=10 > dhe > ransac > none) and the most candidates whose cost, measured at start-up on this "
        "device, fits target_rate. dhe uses the map's adapted head, else "
        "the one shipped for XFeat maps (corridor R@1 92.8 vs ransac 86.5 at their default K).",
        type=str,
        choices=lambda: ["auto", *RERANKERS.names()],
        registry=True,
        cli="--rerank",
        ros=(
            "reranker",
            "auto",
            "a robot gets the most accurate re-ranker its rate allows; offline runs report the plain ranking "
            "unless asked",
        ),
    )
    target_rate: float = knob(
        10.0,
        "Frames per second reranker auto must keep up with (it picks the re-ranker and K by cost measured here).",
        type=float,
        range=(0.1, 1000.0),
        cli="--target-rate",
        ros="target_rate",
    )
    reranker_top_k: int = knob(
        0,
        "Candidates re-ranked; 0 = the method's default (ransac 10, dhe 32, geowarp 5, lighterglue 10, "
        "dhe+lighterglue 10).",
        type=int,
        range=(0, 1000),
        cli="--rerank-k",
        ros="reranker_top_k",
    )
    reranker_weights: str = knob(
        "",
        "Weights file of the re-ranker (dhe, dhe+lighterglue and auto: a DHE head homography_regression_*.torch; "
        "geowarp: its head; lighterglue, loftr, lightglue: the matcher); empty = dhe: the map's adapted head, else the "
        "one shipped for XFeat maps. (CLI: --rerank-set weights=PATH.)",
        type=str,
        ros="reranker_weights",
    )
    reranker_options: dict = knob(
        {},
        "Re-ranker option, e.g. weights=homography_regression.torch (ROS: reranker_weights, reranker_top_k).",
        type=dict,
        cli="--rerank-set",
    )
    min_confidence: float = knob(
        0.5,
        "A fix is STATUS_FIX at or above this confidence, else STATUS_NO_FIX.",
        type=float,
        range=(0.0, 1.0),
        cli="--min-confidence",
        ros="min_confidence",
        runtime=True,
    )
    camera_fov: float = knob(
        0.0,
        "Horizontal field of view of the camera, degrees, for the heading from matches (the map image's heading "
        "plus the relative rotation); 0 = no heading (the node also takes it from CameraInfo, camera_info_topic).",
        type=float,
        range=(0.0, 179.0),
        cli="--camera-fov",
        ros="camera_fov",
    )
    covariance: str = knob(
        "mixture",
        "Covariance of the published position: mixture (the estimate's whole error: its place's spread weighted by "
        "the confidence, plus the rivals' and the map's by the rest; covers the error at every confidence) or "
        "inlier (the chosen place's spread alone: the error when the match is right; for a Kalman filter that gates "
        "outliers by Mahalanobis distance, as robot_localization's rejection thresholds do).",
        type=str,
        choices=lambda: COVARIANCE_MODELS,
        cli="--covariance",
        ros="covariance_model",
    )
    estimate: dict = knob({}, f"Overrides of the estimate's constants ({', '.join(ESTIMATE_DEFAULTS)}).", type=dict)
    temporal: str = knob(
        "none",
        "Sequence filter over the map between the estimate and the outputs: hmm (online Viterbi over place and "
        "velocity; frames in order, dt from stamps, odometry when given) or none (every frame on its own). Falls "
        "back to the single frame until a track forms and whenever the input does not look ordered.",
        type=str,
        choices=lambda: ["none", *TEMPORAL_FILTERS.names()],
        registry=True,
        cli="--temporal",
        ros=(
            "temporal",
            "hmm",
            "a robot's frames come in order: the filter beats single frames on every ordered dev set and falls "
            "back to them on unordered input; offline runs report single frames unless asked",
        ),
    )
    temporal_options: dict = knob(
        {},
        f"Temporal filter option, e.g. max_speed=30 (m/s) ({', '.join(TEMPORAL_DEFAULTS)}).",
        type=dict,
        cli="--temporal-set",
    )

    def validate(self, surface: str | None = None) -> LocalizerConfig:
        """Check every knob (one-line VprError naming it as ``surface`` shows it); returns self."""
        validate(self, surface)
        if self.reranker_weights and self.reranker != "auto" and not RERANKERS.get(self.reranker).takes_weights():
            name = "parameter reranker_weights" if surface == "ros" else "reranker_weights"
            weighted = [n for n in RERANKERS.names() if RERANKERS.get(n).takes_weights()]
            raise VprError(
                f"{name} is set but reranker '{self.reranker}' takes no weights; use reranker {' or '.join(weighted)}"
            )
        bad = set(self.temporal_options) - set(TEMPORAL_DEFAULTS)
        if bad:
            raise VprError(f"temporal_options: unknown option(s) {sorted(bad)}; known: {', '.join(TEMPORAL_DEFAULTS)}")
        unknown = set(self.estimate) - set(ESTIMATE_DEFAULTS)
        if unknown:
            raise VprError(f"estimate: unknown option(s) {sorted(unknown)}; known: {sorted(ESTIMATE_DEFAULTS)}")
        return self

    def reranker_conf(self) -> dict[str, Any]:
        """The re-ranker's own options: ``reranker_options`` plus the explicit top-K and weights."""
        conf = dict(self.reranker_options)
        if self.reranker_top_k:
            conf["top_k"] = int(self.reranker_top_k)
        if self.reranker_weights:
            conf["weights"] = self.reranker_weights
        return conf
