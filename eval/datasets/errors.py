"""The error every annotation reader raises for a malformed file."""

from __future__ import annotations

from pathlib import Path


class AnnotationError(ValueError):
    """A malformed annotation file; the message starts with ``path:line:`` (``path:`` if unknown).

    ``path`` and ``line`` (1-based, or ``None``) stay available as attributes.
    """

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {message}")
