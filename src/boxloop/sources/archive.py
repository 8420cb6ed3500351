"""Zip archives as they come back from annotation tools (Roboflow, CVAT, Label Studio, or a
corrected boxloop export): unpacked once into the workspace, where the images then live."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from ..atomic import temporary_beside
from ..errors import InputError
from .images import file_sha256, hidden

# a label file inside an archive, per format that reads one file
LABEL_FILE_SUFFIXES = {"coco": (".json",), "labelstudio": (".json",), "cvat": (".xml",)}


def is_zip(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() == ".zip" and p.is_file()


def unpack_zip(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` into ``into/<stem>-<content hash>/`` (written aside, renamed into
    place) and return that folder; the same archive again returns the folder it already
    made. Members that would land outside the folder (absolute paths, ``..``), links and
    macOS resource forks are skipped."""
    archive = Path(archive)
    dest = into / f"{archive.stem}-{file_sha256(archive)[:12]}"
    if dest.is_dir():
        return dest
    into.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(dest)
    tmp.mkdir()  # the usual permissions, as the workspace's other folders (mkdtemp's are 0700)
    try:
        try:
            z = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as e:
            raise InputError(f"{archive}: not a readable zip archive: {e}") from e
        with z:
            for member in z.infolist():
                rel = PurePosixPath(member.filename.replace("\\", "/"))
                if (member.is_dir() or rel.is_absolute() or ".." in rel.parts or rel.parts[:1] == ("__MACOSX",)
                        or (member.external_attr >> 16) & 0o170000 == 0o120000):  # a symlink
                    continue
                target = tmp.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def label_files_in(folder: Path, format: str, source: Path) -> list[Path]:
    """The label files of ``format`` an unpacked archive (or a folder) holds: COCO's
    ``annotations/instances_default.json``, CVAT's ``annotations.xml``, or one per split as
    Roboflow exports them (``train/_annotations.coco.json``, ``valid/...``)."""
    suffixes = LABEL_FILE_SUFFIXES[format]
    found = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                   and not hidden(f.relative_to(folder)))
    if not found:
        raise InputError(f"{source}: no {format} label file ({'/'.join(suffixes)}) in it")
    return found
