"""Reading what a robot records, without ROS: image files (with size limits), raw camera
buffers and compressed frames (every sensor_msgs encoding the node accepts), geotagged
image sets (VPR-convention folders, CSVs) and ROS 1/2 bags; plus the crash-safe file
writes (temporary file, then rename) that every output of the project goes through."""

from .._lazy import lazy_exports

_NAMES = {
    "atomic_write": ".files",
    "staged": ".files",
    "load_image": ".images",
    "decode_image": ".images",
    "resize": ".images",
    "to_rgb": ".images",
    "list_images": ".images",
    "decode_raw": ".camera",
    "decode_compressed": ".camera",
    "decode_image_msg": ".camera",
    "SUPPORTED_ENCODINGS": ".camera",
    "GeoImage": ".geoset",
    "GeoSet": ".geoset",
    "load_geoset": ".geoset",
    "make_geoset": ".geoset",
    "read_csv": ".geoset",
    "read_folder": ".geoset",
    "parse_vpr_name": ".geoset",
    "vpr_name": ".geoset",
    "BagError": ".bags",
    "GeoFrame": ".bags",
    "GeoFrames": ".bags",
    "FixSample": ".bags",
    "open_bag": ".bags",
    "write_run_bag": ".bags",
    "IMAGE_TYPES": ".bags",
    "cdr_bytes": ".bags",
    "msgtype_of": ".bags",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
