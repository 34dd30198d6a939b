"""Typed errors for bad input. Every message names the input and the problem."""

from __future__ import annotations


class MespotError(Exception):
    """Base class of every error mespot raises on purpose."""


class ConfigError(MespotError, ValueError):
    """A configuration key is unknown or its value is out of range."""


class SourceError(MespotError):
    """A frame source cannot be opened or read.

    Attributes:
        source: the input as the user gave it (path, URL or camera index).
    """

    def __init__(self, source: object, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class SourceNotFound(SourceError):
    """The file or folder does not exist."""


class SourceCorrupt(SourceError):
    """The file exists but cannot be decoded (truncated, damaged or not a video)."""


class SourceEmpty(SourceError):
    """The source opened but holds no frames (an empty video, a folder without images)."""


class CameraUnavailable(SourceError):
    """No camera answers at that index."""


class StreamUnreachable(SourceError):
    """A network stream (rtsp://) could not be opened within its timeout."""
