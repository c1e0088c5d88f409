"""The retraining export's ZIP, once downloaded: unpacked into a folder of its own, each file
checked against the sha256 the manifest gives (the manifest comes last in the ZIP because the
backend computes the data file's checksum while streaming it).

Plain Python, no Qt: the console runs it in a background task.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from backend.schemas.exports import ExportManifest

MANIFEST = "manifest.json"
CHUNK = 1024 * 1024


class ExportDamaged(Exception):
    """The downloaded export is not what its manifest says: nothing of it is kept."""


def unpack_export(
    archive_path: Path,
    folder: Path,
    on_progress: Callable[[float], None],
    cancelled: Callable[[], bool],
) -> list[Path] | None:
    """Unpack the export into ``folder`` (created; removed again on a failure or a cancel,
    then None). Returns the files written, the manifest last."""
    folder.mkdir(parents=True, exist_ok=False)
    try:
        written = _unpack(archive_path, folder, on_progress, cancelled)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if written is None:
        shutil.rmtree(folder, ignore_errors=True)
    return written


def _unpack(
    archive_path: Path,
    folder: Path,
    on_progress: Callable[[float], None],
    cancelled: Callable[[], bool],
) -> list[Path] | None:
    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile as exc:
        raise ExportDamaged(f"the download is no ZIP file ({exc})") from exc
    with archive:
        names = archive.namelist()
        if MANIFEST not in names:
            raise ExportDamaged("the download has no manifest.json (it was cut short)")
        manifest = ExportManifest.model_validate_json(archive.read(MANIFEST))
        total = sum(archive.getinfo(f.name).file_size for f in manifest.files if f.name in names)
        done = 0
        written: list[Path] = []
        for expected in manifest.files:
            # A name from the download never leaves the folder chosen (no "../", no path).
            if expected.name not in names or Path(expected.name).name != expected.name:
                raise ExportDamaged(f"the manifest names {expected.name!r}, not in the download")
            digest = hashlib.sha256()
            target = folder / expected.name
            with archive.open(expected.name) as source, target.open("wb") as out:
                while chunk := source.read(CHUNK):
                    if cancelled():
                        return None
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    on_progress(done / total if total else 1.0)
            if digest.hexdigest() != expected.sha256:
                raise ExportDamaged(f"{expected.name} does not match the manifest's sha256")
            written.append(target)
        manifest_path = folder / MANIFEST
        manifest_path.write_bytes(archive.read(MANIFEST))
        written.append(manifest_path)
        return written
