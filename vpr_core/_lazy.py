"""Lazy public names for package ``__init__`` files (PEP 562).

A package lists its public names and the module each lives in; the module is imported
on first access. Importing one module of a package therefore never imports its
siblings, so the import graph is the real dependency graph (see test_architecture).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public ``names`` map to their module (relative, e.g.
    ``.format``)."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    def dir_() -> list[str]:
        return sorted(names)

    return getattr_, dir_
