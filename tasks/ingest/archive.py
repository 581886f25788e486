"""Unpack .zip and .tar(.gz/.bz2/.xz) archives, refusing any entry that would land outside the target."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

from configs.errors import UserError

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: Path | str) -> bool:
    name = str(path).lower()
    return name.endswith(".zip") or name.endswith(_TAR_SUFFIXES)


def extract(archive: Path, target: Path) -> list[Path]:
    """Unpack `archive` into `target` (merged with what is there) and return the files written, sorted.

    Every entry is checked before anything is written: absolute names, `..` components, links that
    point outside the archive's tree, entries below a link, and device or FIFO entries raise UserError
    naming the entry. Unpacking happens in a temporary folder next to `target`, so a failure leaves
    `target` untouched and the final moves are renames on one filesystem.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise UserError(f"archive {archive} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, staging)
        elif archive.name.lower().endswith(_TAR_SUFFIXES):
            _extract_tar(archive, staging)
        else:
            raise UserError(f"{archive} is not a .zip, .tar, .tar.gz or .tgz archive")
        written = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_symlink() or p.is_file())
        target.mkdir(exist_ok=True)
        _merge(staging, target, archive)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [target / p for p in written]


def _member_path(archive: Path, name: str) -> str:
    """The normalised relative path of an entry, or UserError when it is absolute or climbs with `..`."""
    unified = name.replace("\\", "/")  # a backslash is a separator on Windows: judge the name as it would be
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UserError(f"{archive}: entry {name!r} has an absolute path; refusing to extract the archive")
    if ".." in unified.split("/"):
        raise UserError(f"{archive}: entry {name!r} climbs out with '..'; refusing to extract the archive")
    return posixpath.normpath(unified)


def _check_links(archive: Path, entries: list[tuple[str, str, str | None, bool]]) -> None:
    """entries: (raw name, normalised path, link target or None, whether the target is archive-root relative)."""
    links = {path for _, path, link, _ in entries if link is not None}
    for raw, path, link, from_root in entries:
        # Below a link, a lexical check says nothing about where the file really lands.
        parents = [posixpath.dirname(path)]
        while parents[-1] not in ("", "."):
            parents.append(posixpath.dirname(parents[-1]))
        if any(parent in links for parent in parents):
            raise UserError(f"{archive}: entry {raw!r} lies below a link of the archive; refusing to extract it")
        if link is None:
            continue
        unified = link.replace("\\", "/")
        # A symlink's target is relative to its folder; a tar hard link names an entry from the archive's root.
        resolved = posixpath.normpath(posixpath.join("" if from_root else posixpath.dirname(path), unified))
        if unified.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UserError(f"{archive}: entry {raw!r} links to {link!r}, outside the archive's folder; "
                            "refusing to extract the archive")


def _extract_zip(archive: Path, staging: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
            entries = []
            for info in infos:
                path = _member_path(archive, info.filename)
                mode = info.external_attr >> 16
                link = bundle.read(info).decode("utf-8") if stat.S_ISLNK(mode) else None
                entries.append((info.filename, path, link, False))
            _check_links(archive, entries)
            for info, (_, path, link, _) in zip(infos, entries):
                destination = staging / path
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                if link is not None:
                    os.symlink(link, destination)
                    continue
                with bundle.open(info) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{archive} is not a readable zip archive ({exc})") from exc


def _extract_tar(archive: Path, staging: Path) -> None:
    try:
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            entries = []
            for member in members:
                path = _member_path(archive, member.name)
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    raise UserError(f"{archive}: entry {member.name!r} is a device or FIFO; refusing to extract it")
                link = member.linkname if member.issym() or member.islnk() else None
                entries.append((member.name, path, link, member.islnk()))
            _check_links(archive, entries)
            # The "data" filter re-checks every path at write time: defence in depth over the checks above.
            bundle.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError) as exc:
        raise UserError(f"{archive} is not a readable tar archive ({exc})") from exc


def _merge(source: Path, target: Path, archive: Path) -> None:
    """Move the tree `source` into `target`, folder by folder; files replace files of the same name."""
    for child in sorted(source.iterdir()):
        destination = target / child.name
        child_is_dir = child.is_dir() and not child.is_symlink()
        if destination.is_dir() and not destination.is_symlink():
            if not child_is_dir:
                raise UserError(f"{archive}: entry {child.name!r} would replace the folder {destination}")
            _merge(child, destination, archive)
        elif child_is_dir and destination.exists():
            raise UserError(f"{archive}: folder {child.name!r} would replace the file {destination}")
        else:
            os.replace(child, destination)
