"""Zip archives of an image folder: extracted once (safely) into the cache, then read as a folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..images import ImageSet
from .common import Progress, SourceError, check_image_size, data_dir_or_default
from .folders import IMAGE_EXTENSIONS, load_folder

ZIP_MAX_FILES = 200_000
ZIP_MAX_TOTAL_BYTES = 4 * 2**30
_ZIP_META = ".scan_zip.json"                # written last into a finished extraction


def load_zip(path: Path, data_dir: Path | None = None, image_size: int | None = None,
             progress: Progress | None = None, cache: Path | None = None) -> ImageSet:
    """The images of a ``.zip`` archive, loaded like :func:`load_folder`.

    The image entries are extracted once into ``data_dir/zips/<key>/`` (key: hash of the zip's
    path, size and mtime) and reused afterwards; one without a readable image is removed again.
    Entries with absolute paths, ``..`` components, links or encryption are skipped with a reason.
    A single top-level folder is treated as the root. Raises :class:`SourceError` for a corrupt
    zip or one over :data:`ZIP_MAX_FILES` / :data:`ZIP_MAX_TOTAL_BYTES`.
    """
    image_size = check_image_size(image_size)
    path = Path(path).expanduser()
    if not path.is_file():
        raise SourceError(f"zip file {path} does not exist")
    path = path.resolve()
    data_dir = data_dir_or_default(data_dir)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_zip_limits(path, archive.infolist())
            target = _extract_zip(path, archive, data_dir / "zips")
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError) as error:
        raise _zip_error(path, f"not a valid zip file ({error})") from error
    except OSError as error:  # the extraction folder is no business of the zip's owner
        raise _zip_error(path, f"cannot read or extract it ({error.strerror or error})") from error
    zip_skipped = json.loads((target / _ZIP_META).read_text())["skipped"]
    try:
        images = load_folder(_zip_root(target), image_size, progress, cache)
    except SourceError as error:                  # e.g. no readable image: name the zip
        shutil.rmtree(target, ignore_errors=True)  # an extraction nothing can use is not kept
        raise _zip_error(path, error.problem) from error
    images.name = path.stem
    images.skipped = zip_skipped + images.skipped
    return images


def _zip_error(path: Path, problem: str) -> SourceError:
    """A :class:`SourceError` for the zip at ``path``: ``"<path>: <problem>"``, ``problem`` kept
    apart (it never names the extraction folder)."""
    return SourceError(f"{path}: {problem}", problem)


def _check_zip_limits(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > ZIP_MAX_FILES:
        raise _zip_error(path, f"holds {len(infos)} entries, more than the limit of {ZIP_MAX_FILES}")
    total = sum(info.file_size for info in infos)
    if total > ZIP_MAX_TOTAL_BYTES:
        raise _zip_error(path, f"unpacks to {total} bytes, more than the limit of {ZIP_MAX_TOTAL_BYTES} bytes")


def _extract_zip(path: Path, archive: zipfile.ZipFile, cache: Path) -> Path:
    """Extract the image entries once into ``cache/<key>``; return that folder."""
    info = path.stat()
    key = hashlib.sha1(f"{path}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()
    target = cache / key
    if (target / _ZIP_META).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{key}."))
    try:
        skipped = [item for entry in archive.infolist()
                   if (item := _extract_entry(archive, entry, staging)) is not None]
        (staging / _ZIP_META).write_text(json.dumps({"zip": str(path), "skipped": skipped}))
        if target.exists() and not (target / _ZIP_META).is_file():  # a half-finished attempt
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / _ZIP_META).is_file():  # else another process finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing left after a successful replace
    return target


def _extract_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, staging: Path) -> dict | None:
    """Extract one image entry under ``staging``; a dict ``{path, reason}`` if it was refused."""
    name = entry.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if entry.is_dir() or not parts or PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    if name.startswith("/") or ".." in parts or ":" in parts[0]:
        return {"path": entry.filename, "reason": "unsafe path in zip (absolute or '..')"}
    if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return None
    if stat.S_ISLNK(entry.external_attr >> 16):
        return {"path": entry.filename, "reason": "symlink entry in zip"}
    if entry.flag_bits & 0x1:
        return {"path": entry.filename, "reason": "encrypted zip entry"}
    destination = staging.joinpath(*parts)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(entry) as source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
        destination.unlink(missing_ok=True)
        return {"path": entry.filename, "reason": f"cannot extract: {error}"}
    return None


def _zip_root(extracted: Path) -> Path:
    """The single top-level folder of an extraction, else the extraction itself."""
    top = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(top) == 1 and top[0].is_dir():
        return top[0]
    return extracted
