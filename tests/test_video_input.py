"""Rough edges a user test found in `boxloop add video`: a still image taken for a one-frame
video, a broken file leaving an empty frames folder, --fps above the clip's own rate, and a clip
sampled again at another rate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _console import flat
from _images import write_image
from boxloop import synth
from boxloop.cli import app
from boxloop.errors import InputError
from boxloop.ingest import add_video
from boxloop.sources import video
from boxloop.sources.images import natural_key
from boxloop.workspace import Workspace

runner = CliRunner()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-frame, 10 fps mp4 of a counting display."""
    root = tmp_path_factory.mktemp("clip")
    seq = synth.generate_sequence(root / "seq", n_frames=20, seed=4)
    frames = sorted((seq / "images").iterdir(), key=lambda p: natural_key(p.name))
    return synth.write_video(frames, root / "counter.mp4", fps=10.0)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws", classes=["0"])


def cli(ws: Workspace, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["-w", str(ws.root), *args])


def frames_of(ws: Workspace) -> list[int]:
    return sorted(it.frame_index for it in ws.store.items() if it.frame_index is not None)


@pytest.mark.parametrize("decoder", ["av", "cv2"])
def test_a_still_image_is_refused_as_a_video(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    if decoder == "cv2":
        monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    photo = write_image(tmp_path / "photos" / "IMAGE.jpg", size=(64, 48), seed=3)
    assert cli(ws, "add", "images", str(photo)).exit_code == 0
    assert ws.store.count_items() == 1
    disguised = tmp_path / "photo.mp4"  # a JPEG's bytes under a video's name
    disguised.write_bytes(photo.read_bytes())
    for still in (photo, disguised):
        result = cli(ws, "add", "video", str(still))
        assert result.exit_code == 0, result.output  # a problem, reported; --strict makes it exit 1
        assert flat(f"{still}: is an image, not a video: use `boxloop add images`") in flat(result.output)
        assert "0 new image(s), 0 already known, 1 problem(s)" in " ".join(result.output.split())
    assert ws.store.count_items() == 1  # no frame duplicating the image
    assert not ws.frames_dir.exists() or not any(ws.frames_dir.iterdir())
    with pytest.raises(InputError, match="is an image, not a video"):
        video.probe_video(photo)
    with pytest.raises(InputError, match="is an image, not a video"):
        video.sample_frames(photo, tmp_path / "f")
    assert not (tmp_path / "f").exists()
    assert cli(ws, "add", "video", str(photo), "--strict").exit_code == 1


def test_a_broken_video_leaves_no_frames_folder(ws: Workspace, tmp_path: Path, clip: Path) -> None:
    junk = tmp_path / "broken.mp4"
    junk.write_bytes(bytes(range(256)) * 40)
    result = cli(ws, "add", "video", str(junk))
    assert result.exit_code == 0, result.output
    assert flat(f"{junk}: not a decodable video") in flat(result.output)
    assert not ws.frames_dir.exists() or list(ws.frames_dir.iterdir()) == []
    with pytest.raises(InputError, match="not a decodable video"):
        add_video(ws, junk)
    assert not ws.frames_dir.exists() or list(ws.frames_dir.iterdir()) == []
    # a good clip beside it still gets its folder
    assert cli(ws, "add", "video", str(junk), str(clip), "--every", "5").exit_code == 0
    assert [p.name for p in ws.frames_dir.iterdir()] == [video.video_id(clip)]
    assert frames_of(ws) == [0, 5, 10, 15]


def test_fps_above_the_clips_rate_says_every_frame_is_kept(ws: Workspace, clip: Path) -> None:
    result = cli(ws, "add", "video", str(clip), "--fps", "100")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "20 new image(s)" in text
    assert ("counter.mp4: the clip has only 10 frames a second, so every frame is kept (20 frames; --fps 100 "
            "asks for more)") in text
    assert frames_of(ws) == list(range(20))
    # at or below the clip's rate there is nothing to say
    again = Workspace.init(ws.root.parent / "ws2", classes=["0"])
    report = add_video(again, clip, fps=10)
    assert report.added == 20 and report.notes == []
    assert add_video(again, clip, fps=10).notes == []  # the same sampling again: nothing new, nothing to say


def test_sampling_a_clip_again_at_another_rate_says_the_frames_are_the_union(ws: Workspace, clip: Path) -> None:
    assert cli(ws, "add", "video", str(clip), "--fps", "5").exit_code == 0
    assert frames_of(ws) == list(range(0, 20, 2))
    result = cli(ws, "add", "video", str(clip), "--fps", "3")  # keeps 0, 4, 7, 10, 14, 17
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 new image(s), 4 already known" in text
    union = sorted(set(range(0, 20, 2)) | {0, 4, 7, 10, 14, 17})
    assert frames_of(ws) == union
    assert ("counter.mp4 was sampled before at another rate (--fps 5); --fps 3 keeps 6 frame(s), and the 6 only "
            "the earlier sampling kept stay: its 12 frames in the workspace are the union of both samplings "
            "(frames 0, 2, 4, 6, 7, 8, 10, 12, ...)") in text
    # once more at one of those rates: every frame it keeps is known, the union is said again
    report = add_video(ws, clip, every=1)
    assert report.added == 8 and frames_of(ws) == list(range(20))
    assert report.notes == []  # every frame is kept: nothing of the earlier samplings lies outside it
    report = add_video(ws, clip, fps=5)
    assert report.added == 0 and report.known == 10
    assert any("was sampled before at another rate (--fps 3, every frame)" in n and "20 frames" in n
               for n in report.notes), report.notes


def test_a_video_is_named_by_its_file_wherever_its_path_sorts(ws: Workspace, tmp_path: Path, clip: Path) -> None:
    """A video under a path that sorts after the workspace's frames/ folder (~/videos beside a
    workspace at ~/lcd) went by its hash in status, select, exports and the report."""
    import shutil

    later = tmp_path / "zz-videos" / "rowing.mp4"
    later.parent.mkdir()
    shutil.copy(clip, later)
    add_video(ws, later, every=5)
    assert list(ws.store.video_names().values()) == ["rowing.mp4"]
    frame = next(it for it in ws.store.items() if it.frame_index == 5)
    assert ws.store.display_names([frame]) == {frame.id: "rowing.mp4 frame 5"}
