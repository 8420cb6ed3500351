"""Write a file so that a reader (or a re-run after a kill) sees the old one or the new
one, never half of one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["temporary_beside", "write_bytes_atomic", "write_text_atomic"]


def temporary_beside(path: Path) -> Path:
    """A name for a temporary file beside ``path``, for a writer that renames it into place;
    opened with mode "x" it gets the usual permissions (mkstemp's are 0600)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename; the parent
    folder is made. A plain open (not mkstemp), so the file gets the usual permissions, not
    0600. Raises the OSError; the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomic` of ``text`` in UTF-8."""
    return write_bytes_atomic(path, text.encode("utf-8"))
