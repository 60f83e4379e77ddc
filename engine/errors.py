"""Typed errors of the engine.

Every error names the file (or object) it is about and the reason, so that a CLI can print it as
one line and a GUI can show it in a dialog without guessing.  CLIs exit with status 2 on any
`AffinityError` (bad input); anything else is a bug.
"""
from __future__ import annotations

import os


class AffinityError(Exception):
    """Base class: something the user gave us cannot be used."""

    def __init__(self, path: "str | os.PathLike | None", reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class VideoError(AffinityError):
    """A video or image folder cannot be opened or decoded."""


class LabelError(AffinityError):
    """A mask or keypoint file is malformed or does not fit the video."""


class CheckpointError(AffinityError):
    """A checkpoint cannot be loaded as a model of ours."""


class ProjectError(AffinityError):
    """A saved project folder is missing, corrupt or belongs to another video."""


class EvaluationError(AffinityError):
    """A dataset or prediction folder cannot be evaluated."""


class ConfigError(AffinityError):
    """A parameter or option has an invalid value."""


class ExportError(AffinityError):
    """An export cannot be written (nothing to export, unwritable target, encoder failure) or an
    exported file cannot be read back."""


class Cancelled(Exception):
    """A long operation stopped because its cancel token was set (not an error of the input)."""
