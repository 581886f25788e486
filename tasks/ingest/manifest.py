"""`<dataset.root>/manifest.json`: what each source brought in, and every file of the dataset with its hash."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from configs.errors import UserError
from tasks.digest import file_sha256

MANIFEST = "manifest.json"
DOWNLOADS = ".downloads"  # fetched archives are kept here so a rerun can see they are already present


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Model):
    path: str  # relative to the dataset root, with "/" separators
    size: int
    sha256: str
    mtime_ns: int  # a rescan trusts the recorded hash of a file whose size and mtime are unchanged


class SourceEntry(_Model):
    url: str
    sha256: str  # of the fetched file, computed after the download
    file: str  # where the fetched file lies, relative to the dataset root
    size: int
    extracted: dict[str, int] = Field(default_factory=dict)  # relative path -> size, for an unpacked archive


class Manifest(_Model):
    version: int = 1
    sources: dict[str, SourceEntry] = Field(default_factory=dict)  # keyed by the source's url as configured
    files: list[FileEntry] = Field(default_factory=list)


def manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST


def load_manifest(root: Path) -> Manifest:
    """The manifest of `root`, or an empty one when there is none yet."""
    path = manifest_path(root)
    if not path.is_file():
        return Manifest()
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise UserError(f"{path} is not a valid msvqa manifest ({exc.error_count()} errors); "
                        "delete it to rebuild it") from exc


def save_manifest(root: Path, manifest: Manifest) -> Path:
    path = manifest_path(root)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)  # readers never see half a manifest
    return path


def scan_files(root: Path, previous: list[FileEntry] | None = None) -> list[FileEntry]:
    """Every dataset file under `root` (not the manifest, kept downloads or partial files), sorted by path."""
    root = Path(root)
    known = {entry.path: entry for entry in previous or []}
    entries = []
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root).as_posix()
        if (not file.is_file() or relative == MANIFEST or relative.startswith(DOWNLOADS + "/")
                or file.name.endswith(".partial")):
            continue
        info = file.stat()
        old = known.get(relative)
        if old is not None and old.size == info.st_size and old.mtime_ns == info.st_mtime_ns:
            entries.append(old)
        else:
            entries.append(FileEntry(path=relative, size=info.st_size, sha256=file_sha256(file),
                                     mtime_ns=info.st_mtime_ns))
    return entries


def fetched_is_current(root: Path, entry: SourceEntry, sha256: str | None) -> bool:
    """Whether the recorded download is still on disk at its size and matches the configured sha256."""
    if sha256 is not None and sha256.lower() != entry.sha256:
        return False
    path = Path(root) / entry.file
    return path.is_file() and path.stat().st_size == entry.size


def extracted_is_current(root: Path, entry: SourceEntry) -> bool:
    """Whether every file unpacked from the source is still there at its recorded size."""
    root = Path(root)
    return all(
        (root / name).is_file() and (root / name).stat().st_size == size for name, size in entry.extracted.items()
    )
