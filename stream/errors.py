"""Typed errors for bad input. Every message names the input and the problem."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host; ?password=...&token=... -> ***
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*):[^/\s]*@")
_SECRET_PARAM = re.compile(r"(?i)(?P<key>[?&;](?:password|passwd|pwd|pass|token|secret|key|auth)=)[^&;#\s]*")


def redact_url(text: object) -> str:
    """`text` as it may be shown (logs, status events, errors): the password of a URL's user info
    and secret-looking query values replaced by ``***``. Anything else is returned unchanged."""
    shown = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}***", shown)


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
        super().__init__(f"{redact_url(source)}: {redact_url(problem)}")


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
