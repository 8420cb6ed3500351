"""Pure parse/serialize of label file formats. No file system walking here: functions
take text or parsed JSON and return values, so they are tested on strings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ImageLabels"]


@dataclass(frozen=True, eq=False)
class ImageLabels:
    """Boxes of one image as a file states them: pixels (xyxy), classes by name.

    ``file_name`` is the image reference inside the file (a relative path, a name or a URL);
    ``scores`` is set when the file holds predictions rather than labels; ``line`` is
    where in the source the image's record starts, for error messages.
    """

    file_name: str
    width: int | None
    height: int | None
    xyxy: np.ndarray
    class_names: tuple[str, ...]
    scores: np.ndarray | None = None
    line: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyxy", np.asarray(self.xyxy, np.float32).reshape(-1, 4))
        if len(self.class_names) != len(self.xyxy):
            raise ValueError("one class name per box")
