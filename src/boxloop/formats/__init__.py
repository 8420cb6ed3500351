"""Pure parse/serialize of label file formats. No file system walking here: functions
take text or parsed JSON and return values, so they are tested on strings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SLACK_PX", "ImageLabels", "clip_box"]

# A box edge this far outside the image is rounding (or the 0- vs 1-based mix-up): clipped
# without a word. Further out it is clipped too, as Ultralytics clips it, and said in a note.
SLACK_PX = 1.0


@dataclass(frozen=True, eq=False)
class ImageLabels:
    """Boxes of one image as a file states them: pixels (xyxy), classes by name.

    ``file_name`` is the image reference inside the file (a relative path, a name or a URL);
    ``scores`` is set when the file holds predictions rather than labels; ``line`` is
    where in the source the image's record starts, for error messages; ``extra["clipped"]``
    (when set) lists where each box that reached past the image, and was clipped to it, is in
    the source (``file:line``), for a note.
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


def clip_box(
    xyxy: tuple[float, float, float, float] | list[float], width: float, height: float, *, slack: float = SLACK_PX
) -> tuple[list[float] | None, bool]:
    """A pixel box clipped to a ``width`` x ``height`` image, and whether an edge reached past
    the image by more than ``slack`` (worth telling). The box is None when nothing of it is
    inside the image (it lies wholly outside, or has no area there).

    >>> clip_box((90, 10, 120, 20), 100, 50)
    ([90.0, 10.0, 100.0, 20.0], True)
    >>> clip_box((100.5, 10, 120, 20), 100, 50)
    (None, True)
    """
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    w, h = float(width), float(height)
    inside = [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]
    past = x1 < -slack or y1 < -slack or x2 > w + slack or y2 > h + slack
    if inside[2] <= inside[0] or inside[3] <= inside[1]:
        return None, past
    return inside, past
