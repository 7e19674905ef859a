"""One exception type for every user-facing failure.

The CLI and the node print ``str(err)`` as a single line, so every message names
the file (or topic) and says how to fix it.
"""

from __future__ import annotations


class VprError(Exception):
    """A failure caused by input the user can fix (file, config, map)."""


class MapError(VprError):
    """The map file is missing, corrupt, foreign or of an unknown version."""


class ImageError(VprError):
    """An image cannot be decoded or has an unusable size."""
