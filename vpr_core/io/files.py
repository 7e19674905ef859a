"""Crash-safe outputs: a file or folder appears complete under its final name, or not at all.

Everything the project writes (maps, reports, plots, checkpoints, bags, image folders)
goes through these two helpers: the content is written beside the target under a
temporary name and renamed over it, so a crash or a kill never leaves half a file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "staged"]


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``; the temp file is removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp makes 0600; outputs get normal permissions (a node may run as another user)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A not-yet-existing path beside ``out`` to build a folder at; renamed to ``out`` when the block completes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    parent = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield parent / "staged"
        (parent / "staged").rename(out)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
