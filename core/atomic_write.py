"""Writing files so that readers never see half of one: write a temporary file, flush it to disk,
then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, save: Callable[[str], object]) -> Path:
    """Call ``save(temporary_path)``, then rename the temporary file to ``path``.

    The temporary file sits in the same folder (a rename within a file system is atomic) and is
    removed if ``save`` fails, so ``path`` holds either its old content or the complete new one.
    The file gets the mode a plain ``open`` would give it (0666 less the umask: ``mkstemp``'s 0600
    would hide shared reports), its data reaches the disk before the rename, and the folder's entry
    after it, so a crash leaves the old file or the new one, never an empty one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(path.parent)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
