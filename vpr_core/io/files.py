"""Crash-safe outputs: a file or folder appears complete under its final name, or not at all.

Everything the project writes (maps, reports, plots, checkpoints, bags, image folders)
goes through these helpers: the content is written beside the target under a temporary
name (``.<name>.<pid>.<random>.tmp``, or a ``.<name>.<pid>.<random>`` folder) and renamed
over it, so a crash or a ``kill -9`` never leaves half a file under the final name. The
temporaries carry the writer's pid: the next write of the same target deletes those whose
writer is gone. An output that cannot be written (a parent that is a file, a read-only
folder, a full disk, a directory in the way) is one ``VprError`` line naming the path and the fix.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import VprError

__all__ = ["atomic_write", "clean_stale", "output_error", "staged", "temp_sibling", "tensor_view"]

_HINTS = {
    errno.ENOTDIR: "a parent of it is a file, not a folder; choose another path",
    errno.EEXIST: "a parent of it is a file, not a folder; choose another path",
    errno.EACCES: "the folder is not writable; choose a writable folder or fix its permissions",
    errno.EPERM: "the folder is not writable; choose a writable folder or fix its permissions",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted; free some space or write elsewhere",
    errno.EFBIG: "the file grew past the file-size limit (ulimit -f) or the disk is full; write elsewhere",
    errno.EISDIR: "it is a directory; give a file name",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


#: How serialisers that do not raise OSError report a failed write (errno -> words in their message).
_WRITE_FAILURES = {
    errno.ENOSPC: ("No space left", "ENOSPC"),
    errno.EFBIG: ("File too large", "EFBIG"),
    errno.EACCES: ("Permission denied",),
    errno.EROFS: ("Read-only file system",),
}


def output_error(path: Path, e: OSError) -> VprError:
    """One line for an output that cannot be written, with what to do about it."""
    hint = _HINTS.get(e.errno or -1, "check the path and the disk")
    return VprError(f"{path}: cannot write ({e.strerror or e}); {hint}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(path: Path) -> list[Path]:
    """Delete temporaries of ``path`` (files or folders) left by writers that no longer run; returns them."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[^/]*$")
    removed: list[Path] = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.match(p.name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _prepare(path: Path) -> None:
    if path.is_dir():
        raise VprError(f"{path}: is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(path, e) from None
    clean_stale(path)


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh temporary folder beside ``path`` (pid-tagged, so a later run can clean it up after a crash)."""
    _prepare(path)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent))
    except OSError as e:
        raise output_error(path, e) from None


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``; the temp file is removed on failure."""
    path = Path(path)
    _prepare(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise output_error(path, e) from None
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp makes 0600; outputs get normal permissions (a node may run as another user)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(path, e) from None
    except Exception as e:  # serialisers wrap a failed write in their own types (torch: RuntimeError)
        Path(tmp).unlink(missing_ok=True)
        text = str(e)
        for code, words in _WRITE_FAILURES.items():
            if any(w in text for w in words):
                raise output_error(path, OSError(code, os.strerror(code))) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A not-yet-existing path beside ``out`` to build a folder at; renamed to ``out`` when the block completes. It
    has ``out``'s name, because writers name their files after the folder (a bag's ``NAME.mcap``)."""
    out = Path(out)
    parent = temp_sibling(out)
    try:
        yield parent / out.name
        try:
            (parent / out.name).rename(out)
        except OSError as e:
            raise output_error(out, e) from None
    except OSError as e:
        raise output_error(out, e) from None
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def tensor_view(arr):
    """A torch tensor over ``arr`` without a copy, also over a read-only memory-mapped map array (torch warns that
    it cannot guard read-only memory; these arrays are never written)."""
    import warnings

    import numpy as np
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(arr))
