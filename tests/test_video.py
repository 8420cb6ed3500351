"""Video frame sampling: which frames are kept, where they go, and that a re-run adds nothing."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _console import flat
from _images import write_image
from boxloop import synth
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.sources import video
from boxloop.sources.images import load_image, natural_key, read_image_info
from boxloop.workspace import Workspace


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A 20-frame, 10 fps mp4 of a counting LCD display, and the frames it was made from."""
    root = tmp_path_factory.mktemp("clip")
    seq = synth.generate_sequence(root / "seq", n_frames=20, seed=4)
    frames = sorted((seq / "images").iterdir(), key=lambda p: natural_key(p.name))
    return synth.write_video(frames, root / "counter.mp4", fps=10.0), frames


@pytest.fixture(params=["av", "cv2"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with PyAV, then again as if PyAV were not installed (OpenCV fallback)."""
    if request.param == "cv2":
        monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    return request.param


def test_every_second_frame(clip: tuple[Path, list[Path]], tmp_path: Path, decoder: str) -> None:
    path, _ = clip
    got = list(video.sample_frames(path, tmp_path / "f", every=2))
    assert [i for i, _ in got] == list(range(0, 20, 2))
    assert [p.name for _, p in got] == [f"frame_{i:06d}.jpg" for i in range(0, 20, 2)]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [p.name for _, p in got]
    assert read_image_info(got[0][1]).width == 320


def test_five_per_second_of_a_ten_fps_video(
    clip: tuple[Path, list[Path]], tmp_path: Path, decoder: str
) -> None:
    path, _ = clip
    assert [i for i, _ in video.sample_frames(path, tmp_path / "f", fps=5)] == list(range(0, 20, 2))
    # 3 per second: the first frame at or after each third of a second
    assert [i for i, _ in video.sample_frames(path, tmp_path / "g", fps=3)] == [0, 4, 7, 10, 14, 17]


def test_kept_frames_look_like_the_frames_encoded(
    clip: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    path, frames = clip
    got = dict(video.sample_frames(path, tmp_path / "f", every=7))
    assert list(got) == [0, 7, 14]
    for i, out in got.items():
        a = load_image(out).astype(np.int16)
        b = load_image(frames[i]).astype(np.int16)
        assert a.shape == b.shape and np.abs(a - b).mean() < 6, i
    # frames differ from each other much more than from their own encoding
    assert np.abs(load_image(got[0]).astype(np.int16) - load_image(frames[7])).mean() > 6


def test_rerun_writes_nothing_new(clip: tuple[Path, list[Path]], tmp_path: Path) -> None:
    path, _ = clip
    out = tmp_path / "f"
    first = list(video.sample_frames(path, out, every=3))
    stamps = {p: p.stat().st_mtime_ns for _, p in first}
    (out / "frame_000009.jpg").unlink()  # as if the first run had stopped early
    seen: list[int] = []
    second = list(video.sample_frames(path, out, every=3, progress=seen.append))
    assert second == first
    assert seen == list(range(1, 21))
    for p, stamp in stamps.items():
        if p.name != "frame_000009.jpg":
            assert p.stat().st_mtime_ns == stamp, p
    assert (out / "frame_000009.jpg").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_video_id_is_a_content_hash(clip: tuple[Path, list[Path]], tmp_path: Path) -> None:
    path, _ = clip
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(path.read_bytes())
    vid = video.video_id(path)
    assert len(vid) == 16 and int(vid, 16) >= 0
    assert video.video_id(copy) == vid
    copy.write_bytes(path.read_bytes() + b"\0")
    assert video.video_id(copy) != vid


def test_probe_reads_size_rate_and_length(clip: tuple[Path, list[Path]], decoder: str) -> None:
    info = video.probe_video(clip[0])
    assert (info.width, info.height, info.frames) == (320, 240, 20)
    assert info.fps == pytest.approx(10.0) and info.duration == pytest.approx(2.0, abs=0.15)


def test_text_file_named_mp4_is_an_input_error(tmp_path: Path, decoder: str) -> None:
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(InputError, match=r"holiday\.mp4"):
        video.sample_frames(fake, tmp_path / "f")  # at the call, before any iteration
    with pytest.raises(InputError, match=r"holiday\.mp4"):
        video.probe_video(fake)
    assert not (tmp_path / "f").exists()


def test_missing_and_empty_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"gone\.mp4"):
        list(video.sample_frames(tmp_path / "gone.mp4", tmp_path / "f"))
    with pytest.raises(InputError, match=r"gone\.mp4"):
        video.video_id(tmp_path / "gone.mp4")
    (tmp_path / "zero.mp4").touch()
    with pytest.raises(InputError, match=r"zero\.mp4.*empty"):
        list(video.sample_frames(tmp_path / "zero.mp4", tmp_path / "f"))


@pytest.mark.parametrize(
    ("every", "fps", "message"),
    [
        (2, 5.0, "not both"),
        (0, None, "--every"),
        (1.5, None, "--every"),
        (None, 0.0, "--fps"),
        (None, float("nan"), "--fps"),
    ],
)
def test_bad_sampling_options(
    clip: tuple[Path, list[Path]], tmp_path: Path, every: object, fps: object, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        list(video.sample_frames(clip[0], tmp_path / "f", every=every, fps=fps))  # type: ignore[arg-type]


def test_fps_sampling_follows_timestamps_of_a_variable_rate_video() -> None:
    # A phone video that stutters: 30 fps, then a 0.5 s gap, then 10 fps.
    times = [Fraction(i, 30) for i in range(15)] + [
        Fraction(1) + Fraction(i, 10) for i in range(10)
    ]
    keep = video._Keep(None, 2.0)
    kept = [i for i, t in enumerate(times) if keep(i, t)]
    # one frame per half second of video time; the 0.5-1.0 s slot holds no frame at all
    assert [float(times[i]) for i in kept] == [0.0, 1.0, 1.5]


def test_add_video_takes_a_folder_of_clips_and_a_bad_one_loses_nothing(
    clip: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """`boxloop add video FOLDER`: every clip its own ordered sequence, an unreadable one
    reported by path while the others are added, a re-run adds nothing; `add images` on the
    same folder takes the photo and says how to add the videos."""
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "counter.mp4").write_bytes(clip[0].read_bytes())
    seq = synth.generate_sequence(tmp_path / "seq2", n_frames=6, seed=9)
    synth.write_video(sorted((seq / "images").iterdir(), key=lambda p: natural_key(p.name)), clips / "sub" / "b.mp4")
    (clips / "broken.mp4").write_text("not a video")
    write_image(clips / "still.jpg", seed=1)
    ws = Workspace.init(tmp_path / "ws", classes=["0"])
    ws.close()
    runner = CliRunner()

    def add(*args: str):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, ["-w", str(ws.root), "add", *args])
        return result, " ".join(result.output.split())

    result, text = add("video", str(clips), "--every", "2")
    assert result.exit_code == 0, result.output
    assert "13 new image(s), 0 already known, 1 problem(s)" in text  # 10 + 3 frames
    assert "2 videos, each its own frame sequence" in text
    assert f"{clips / 'broken.mp4'}:notadecodablevideo" in flat(result.output)
    with Workspace.open(ws.root) as again:
        items = again.store.items()
        by_video: dict[str | None, list[int | None]] = {}
        for it in items:
            by_video.setdefault(it.video_id, []).append(it.frame_index)
        assert sorted(sorted(v) for v in by_video.values()) == [[0, 2, 4], list(range(0, 20, 2))]  # type: ignore[type-var]
        assert None not in by_video

    result, text = add("video", str(clips), "--every", "2")
    assert "0 new image(s), 13 already known" in text
    status = " ".join(runner.invoke(app, ["-w", str(ws.root), "status"]).output.split())
    assert "videos: b.mp4 (3 frames, frames/" in status and "counter.mp4 (10 frames, frames/" in status
    result, _ = add("video", str(clips), "--every", "2", "--strict")
    assert result.exit_code == 1
    result, text = add("video", str(tmp_path / "seq2"))
    assert result.exit_code == 0 and "no video files" in text  # a folder of frames, not videos
    result, text = add("video", str(clips), "--every", "0")
    assert result.exit_code == 1 and "--every must be a whole number >= 1" in text

    result, text = add("images", str(clips))
    assert result.exit_code == 0, result.output
    assert "1 new image(s)" in text
    assert "3 video file(s) left out" in text and "boxloop add video PATH --fps 2" in text


def cvat_video_xml(source: str | None, tracks: str) -> str:
    meta_source = f"<source>{source}</source>" if source else ""
    return ("<?xml version='1.0' encoding='utf-8'?>\n<annotations><version>1.1</version><meta><task><mode>interpolation"
            "</mode><labels><label><name>3</name></label><label><name>7</name></label></labels><original_size>"
            f"<width>320</width><height>240</height></original_size></task>{meta_source}</meta>\n{tracks}\n</annotations>")


def test_cvat_for_video_labels_land_on_the_frames_this_workspace_sampled(
    clip: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """A video annotated in CVAT and exported as 'CVAT for video 1.1': each track's box per frame
    (video frame ids) goes to the frame boxloop sampled there; keyframes alone are interpolated;
    frames boxloop did not sample are left out, said once; a video it does not know is named."""
    from boxloop.ingest import add_labels, add_video

    path, _ = clip
    ws = Workspace.init(tmp_path / "ws", classes=[str(d) for d in range(10)])
    add_video(ws, path, every=2)  # frames 0, 2, ..., 18
    every_frame = "".join(  # CVAT lists a track's every frame; outside="1" ends it
        f'<box frame="{f}" outside="{int(f == 6)}" occluded="0" keyframe="1" xtl="{10 + f}" ytl="20" xbr="{40 + f}" '
        'ybr="60" z_order="0"/>' for f in range(7))
    keyframes = ('<box frame="2" outside="0" occluded="0" keyframe="1" xtl="100" ytl="20" xbr="140" ybr="60"/>'
                 '<box frame="6" outside="0" occluded="0" keyframe="1" xtl="120" ytl="20" xbr="160" ybr="60"/>'
                 '<box frame="7" outside="1" occluded="0" keyframe="1" xtl="120" ytl="20" xbr="160" ybr="60"/>')
    xml = tmp_path / "annotations.xml"
    xml.write_text(cvat_video_xml(path.name, f'<track id="0" label="3" source="manual">{every_frame}</track>'
                                             f'<track id="1" label="7" source="manual">{keyframes}</track>'))
    report = add_labels(ws, xml, format="cvat")
    assert (report.added, report.known, report.labeled) == (0, 4, 4) and not report.problems
    assert any("3 of the 7 frames of counter.mp4 with boxes are not frames this workspace sampled" in n
               for n in report.notes)
    frame_of = {it.frame_index: it.id for it in ws.store.items()}
    labels = ws.store.latest_labels()
    assert sorted(f for f, i in frame_of.items() if i in labels) == [0, 2, 4, 6]
    np.testing.assert_allclose(labels[frame_of[4]].xyxy, [[14, 20, 44, 60], [110, 20, 150, 60]])  # track 1: halfway
    assert [ws.classes[int(c)] for c in labels[frame_of[4]].class_id] == ["3", "7"]
    np.testing.assert_allclose(labels[frame_of[6]].xyxy, [[120, 20, 160, 60]])  # track 0 is outside there

    unnamed = tmp_path / "unnamed.xml"
    unnamed.write_text(cvat_video_xml(None, f'<track id="0" label="7">{keyframes}</track>'))
    with pytest.raises(InputError, match="names no video"):
        add_labels(ws, unnamed, format="cvat")
    named = add_labels(ws, unnamed, format="cvat", images=path)  # --images names the video
    assert (named.labeled, named.unchanged_labels) == (2, 1)  # frame 6 held only this box already
    other = tmp_path / "other.xml"
    other.write_text(cvat_video_xml("rowing.mp4", f'<track id="0" label="7">{keyframes}</track>'))
    result = CliRunner().invoke(app, ["-w", str(ws.root), "add", "labels", str(other), "--format", "cvat"])
    assert result.exit_code == 1 and "noframeofrowing.mp4inthisworkspace" in flat(result.output)
