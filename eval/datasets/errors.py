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


def read_annotation_text(path: str | Path) -> str:
    """The UTF-8 text of an annotation file; bytes that are not UTF-8 raise AnnotationError with
    the line they sit on, instead of a bare UnicodeDecodeError."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise AnnotationError(path, line, f"not UTF-8 text (byte {data[error.start]:#04x})") from None
