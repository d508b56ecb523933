"""Exception hierarchy.

    FacegateError
    ├── ConfigError      a setting or argument the caller got wrong (programmer error)
    ├── WeightsError     a weights file that is missing, corrupt or of the wrong kind
    ├── ImageError       one input that cannot be read as an image (bad data, not a bug)
    └── SourceError      a camera, video or stream that cannot be opened or drops out

Programmer errors are raised. Bad data is raised by the low-level loaders as
``ImageError`` and turned by the gate into an ``unreadable`` result, so that a batch goes on.
"""

from __future__ import annotations


class FacegateError(Exception):
    """Base class of every error facegate raises on purpose."""


class ConfigError(FacegateError, ValueError):
    """A setting, argument or array shape the caller got wrong."""


class WeightsError(FacegateError):
    """Weights that cannot be loaded: missing file, wrong keys, wrong architecture."""


class ImageError(FacegateError):
    """An input that cannot be decoded as an image; names the input and the cause."""

    def __init__(self, source: str, cause: str):
        self.source = source
        self.cause = cause
        super().__init__(f"{source}: {cause}")


class SourceError(FacegateError):
    """A camera, video file or stream that cannot be opened or stops delivering frames."""
