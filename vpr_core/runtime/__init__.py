"""Running models fast where the robot is: the extractor (device choice, fp16 on CUDA, batched
and prefetched decoding), the inference backends with their logged fallback chain (TensorRT,
onnxruntime, eager) and the export of the per-frame modules to ONNX or TensorRT. Models are
handed to this layer; it never imports the map or the localizer."""

from .._lazy import lazy_exports

_NAMES = {
    "DEVICES": ".extractor",
    "Extractor": ".extractor",
    "describe_images": ".extractor",
    "resolve_device": ".extractor",
    "BACKENDS": ".backends",
    "Runner": ".backends",
    "make_runner": ".backends",
    "MODULES": ".export",
    "export": ".export",
    "global_module": ".export",
    "dhe_module": ".export",
    "Exported": ".compile",
    "to_onnx": ".compile",
    "check_onnx": ".compile",
    "compile_tensorrt": ".compile",
    "temp_onnx": ".compile",
    "timed_ms": ".timing",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
