"""Sample frames of a video file into JPEGs (every Nth frame, or F per second by timestamp).

Frames are written atomically as ``frame_{index:06d}.jpg`` where index is the frame's
position in the decoded video, and frames already on disk are not written again, so a
sampling run that was interrupted finishes the job when it is run again.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import InputError
from .images import IMAGE_SUFFIXES, file_sha256

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "check_sampling", "probe_video", "sample_frames", "video_id"]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})
JPEG_QUALITY = 95


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream (counts may be estimates)."""

    path: Path
    width: int
    height: int
    frames: int | None  # None where the container does not say
    fps: float | None
    duration: float | None  # seconds


def _check_file(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read video: {e.strerror or e}") from e
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")


def _refuse_still(path: Path) -> None:
    """An InputError for a still image given as a video (a decoder would take it for a
    one-frame video, a frame that duplicates the image `boxloop add images` indexes): a file
    named as an image, or one Pillow reads as a picture of one frame."""
    from PIL import Image, UnidentifiedImageError

    still = path.suffix.lower() in IMAGE_SUFFIXES
    if not still:
        try:
            with Image.open(path) as im:
                # Pillow names an MPEG-1 stream by its sequence header alone: that one is a video
                still = im.format != "MPEG" and int(getattr(im, "n_frames", 1) or 1) <= 1
        except (UnidentifiedImageError, OSError, ValueError):
            still = False  # not a picture Pillow knows: the video decoder judges it
    if still:
        raise InputError(f"{path}: is an image, not a video: use `boxloop add images`")


def video_id(path: Path) -> str:
    """A stable id for a video: the first 16 hex digits of the sha256 of its bytes."""
    path = Path(path)
    _check_file(path)
    return file_sha256(path)[:16]


def _open_av(path: Path) -> tuple[Any, Any]:
    """Open ``path`` with PyAV; (container, first video stream), or InputError naming it."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a decodable video: {e}") from e
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: not a decodable video (no video stream)")
    return container, container.streams.video[0]


def probe_video(path: Path) -> VideoInfo:
    """Size, frame count, rate and duration from the container, without decoding frames.
    A still image is an InputError (it is no video, though a decoder reads it as one frame)."""
    path = Path(path)
    _check_file(path)
    _refuse_still(path)
    try:
        import av  # noqa: F401
    except ImportError:
        return _probe_cv2(path)
    container, stream = _open_av(path)
    with container:
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(
            path,
            int(stream.codec_context.width),
            int(stream.codec_context.height),
            int(stream.frames) or None,
            float(rate) if rate else None,
            duration,
        )


def _probe_cv2(path: Path) -> VideoInfo:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"{path}: not a decodable video")
        fps = cap.get(cv2.CAP_PROP_FPS) or None
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        return VideoInfo(
            path,
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            frames,
            fps,
            frames / fps if frames and fps else None,
        )
    finally:
        cap.release()


class _Keep:
    """Decides which decoded frames to keep: every Nth, or the first frame of each 1/F s."""

    def __init__(self, every: int | None, fps: float | None) -> None:
        self.every = every
        self.fps = Fraction(fps).limit_denominator(1_000_000) if fps is not None else None
        self.t0: Fraction | float | None = None
        self.last_slot = -1

    def __call__(self, index: int, t: Fraction | float | None) -> bool:
        if self.every is not None:
            return index % self.every == 0
        assert self.fps is not None
        if t is None:
            return False
        if self.t0 is None:
            self.t0 = t
        # exact with Fractions; a tiny slack guards float timestamps (OpenCV) from rounding
        pos = (t - self.t0) * self.fps
        slot = math.floor(pos) if isinstance(pos, Fraction) else math.floor(pos + 1e-6)
        if slot > self.last_slot:
            self.last_slot = slot
            return True
        return False


def check_sampling(every: int | None, fps: float | None) -> tuple[int | None, float | None]:
    """(every, fps) as sampling uses them (every frame when neither is given); bad values are an InputError."""
    if every is not None and fps is not None:
        raise InputError("give either --every N or --fps F, not both")
    if every is None and fps is None:
        every = 1
    if every is not None and (isinstance(every, bool) or int(every) != every or every < 1):
        raise InputError(f"--every must be a whole number >= 1, got {every!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"--fps must be a number > 0, got {fps!r}")
    return (int(every) if every is not None else None), fps


def _write_jpeg(image: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, "JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sample_frames(
    path: Path,
    out_dir: Path,
    *,
    every: int | None = None,
    fps: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, Path]]:
    """Decode ``path`` and write the kept frames into ``out_dir``; yields (frame index, jpg path).

    Keep every ``every``-th frame (default every frame) or ``fps`` frames per second of
    video time, chosen by timestamp so variable frame rates sample evenly. Frames already
    in ``out_dir`` are yielded but not written again. ``progress`` is called after each
    decoded frame with the number of frames decoded so far.
    """
    # Bad options and files fail here, at the call, not at the first iteration.
    every, fps = check_sampling(every, fps)
    path = Path(path)
    probe_video(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _sample(path, out_dir, _Keep(every, fps), progress)


def _sample(
    path: Path, out_dir: Path, keep: _Keep, progress: Callable[[int], None] | None
) -> Iterator[tuple[int, Path]]:
    try:
        import av  # noqa: F401
    except ImportError:
        frames = _decode_cv2(path)
    else:
        frames = _decode_av(path)
    written = kept = 0
    for index, t, to_image in frames:
        if progress is not None:
            progress(index + 1)
        if not keep(index, t):
            continue
        kept += 1
        target = out_dir / f"frame_{index:06d}.jpg"
        if not target.exists():
            _write_jpeg(to_image(), target)
            written += 1
        yield index, target
    logger.info("%s: kept %d frame(s), wrote %d new into %s", path, kept, written, out_dir)


_Frame = tuple[int, "Fraction | float | None", Callable[[], Any]]


def _decode_av(path: Path) -> Iterator[_Frame]:
    """Frames in presentation order with their timestamps (exact Fractions) via PyAV."""
    import av

    container, stream = _open_av(path)
    stream.thread_type = "AUTO"
    index = -1
    with container:
        try:
            for frame in container.decode(stream):
                index += 1
                t = (
                    frame.pts * frame.time_base
                    if frame.pts is not None and frame.time_base
                    else None
                )
                if t is None and stream.average_rate:
                    t = Fraction(index) / stream.average_rate
                yield index, t, partial(_displayed, frame)
        except av.FFmpegError as e:
            raise InputError(f"{path}: cannot decode video after frame {index}: {e}") from e
    if index < 0:
        raise InputError(f"{path}: not a decodable video (no frames)")


def _displayed(frame: Any) -> Any:
    """The frame as a PIL image, turned upright when the video carries a rotation."""
    image = frame.to_image()
    rotation = round(getattr(frame, "rotation", 0) or 0) % 360
    if rotation:
        # the display matrix rotates counterclockwise by this angle, as does PIL's rotate
        image = image.rotate(rotation, expand=True)
    return image


def _decode_cv2(path: Path) -> Iterator[_Frame]:
    """The OpenCV fallback where PyAV is not installed (timestamps in float seconds)."""
    import cv2
    from PIL import Image

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"{path}: not a decodable video")
        rate = cap.get(cv2.CAP_PROP_FPS) or 0.0
        index = -1
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            index += 1
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            t: float | None = msec / 1000 if msec or index == 0 else None
            if t is None and rate:
                t = index / rate
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield index, t, partial(Image.fromarray, rgb)
        if index < 0:
            raise InputError(f"{path}: not a decodable video (no frames)")
    finally:
        cap.release()
