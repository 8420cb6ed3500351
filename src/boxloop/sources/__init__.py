"""Where items come from: image files and folders, frame sequences and videos."""

import os
from pathlib import Path


def absolute_path(path: str | Path) -> Path:
    """``path`` made absolute with ``..`` and ``~`` resolved (symlinks kept): the one
    spelling a file is stored under, whichever working folder it was named from."""
    return Path(os.path.abspath(os.path.expanduser(path)))
