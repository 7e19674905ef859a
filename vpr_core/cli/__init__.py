"""The ``vpr`` command line: ``main`` and its parser; each verb (map, eval, calibrate, train, export, demo, models)
is a module here."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
