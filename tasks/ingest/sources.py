"""Bring a dataset into `dataset.root`: fetch and unpack its sources, or generate the synthetic one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from configs.errors import UserError
from configs.schema import DatasetConfig, Source
from tasks.ingest.archive import extract, is_archive
from tasks.digest import file_sha256
from tasks.ingest.download import download, file_name, is_remote, local_path
from tasks.ingest.layout import has_dataset
from tasks.ingest.manifest import (DOWNLOADS, Manifest, SourceEntry, extracted_is_current, fetched_is_current,
                            load_manifest, save_manifest, scan_files)
from tasks.ingest.synth_dataset import generate_dataset

# Per socket operation (connect, each read), not per file: a slow but live download never times out.
DOWNLOAD_TIMEOUT_S = 60.0
# What ensure_dataset reports, weakest first; a run reports the strongest thing any source needed.
_ACTIONS = ("present", "extracted", "copied", "downloaded")


def local_source_path(source: Source) -> Path:
    if is_remote(source.url):
        raise UserError(f"dataset.sources: {source.url!r} is a remote URL, not a local path")
    return local_path(source.url)


def copy_source(source: Source, root: Path) -> list[Path]:
    """Copy a file or a folder's contents into `root`; existing files of the same size are kept."""
    path = local_source_path(source)
    if not path.exists():
        raise UserError(f"dataset.sources: {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    copied = []
    for file in files:
        target = root / (file.name if path.is_file() else file.relative_to(path))
        if target.exists() and target.stat().st_size == file.stat().st_size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(file, partial)
        partial.replace(target)  # atomic: a crash never leaves a half-copied file under its real name
        copied.append(target)
    return copied


def sync_source(root: Path, source: Source, manifest: Manifest,
                progress: Callable[[int, int | None], None] | None = None) -> str:
    """Fetch (and unpack) one source unless the manifest shows it is already in place; returns the action.

    A local folder is copied file by file as `copy_source` does. A file is fetched to `root/<name>`,
    or, when it is an archive to extract, to `root/.downloads/<name>` and unpacked into `root`.
    `manifest.sources` is updated in memory; the caller saves it.
    """
    root = Path(root)
    if not is_remote(source.url):
        path = local_path(source.url)
        if not path.exists():
            raise UserError(f"dataset.sources: {path} does not exist")
        if path.is_dir():
            return "copied" if copy_source(source, root) else "present"
    name = file_name(source.url)
    unpack = source.extract and is_archive(name)
    fetched = root / DOWNLOADS / name if unpack else root / name
    entry = manifest.sources.get(source.url)
    action = "present"
    renewed = entry is None or not fetched_is_current(root, entry, source.sha256)
    if renewed:
        # A file left in place by an interrupted earlier run needs no second download if its hash matches.
        reusable = source.sha256 is not None and fetched.is_file() and file_sha256(fetched) == source.sha256.lower()
        if not reusable:
            download(source.url, fetched, source.sha256, timeout_s=DOWNLOAD_TIMEOUT_S, progress=progress)
            action = "downloaded" if is_remote(source.url) else "copied"
        entry = SourceEntry(url=source.url, sha256=source.sha256.lower() if source.sha256 else file_sha256(fetched),
                            file=fetched.relative_to(root).as_posix(), size=fetched.stat().st_size)
    if unpack and (renewed or not extracted_is_current(root, entry)):
        written = extract(fetched, root)
        entry.extracted = {p.relative_to(root).as_posix(): p.stat().st_size for p in written if p.is_file()}
        action = "extracted" if action == "present" else action
    manifest.sources[source.url] = entry
    return action


def sync_sources(root: Path, sources: list[Source],
                 progress: Callable[[int, int | None], None] | None = None) -> str:
    """Bring every source into `root` and keep `root/manifest.json` up to date; returns the strongest action."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(root)
    actions = []
    for source in sources:
        actions.append(sync_source(root, source, manifest, progress))
        save_manifest(root, manifest)  # after each source, so an interrupted run keeps what it finished
    action = max(actions, key=_ACTIONS.index)
    if action != "present" or not manifest.files:
        manifest.files = scan_files(root, manifest.files)
        save_manifest(root, manifest)
    return action


def ensure_dataset(cfg: DatasetConfig, progress=None) -> str:
    """Make sure `cfg.root` holds an MSVD-QA-layout dataset; returns what was done.

    With sources, the manifest decides what to fetch (a present dataset is not enough: a source whose
    sha256 changed is fetched again). Without, a present dataset is kept, else the synthetic one is made.
    """
    root = Path(cfg.root)
    if cfg.sources:
        return sync_sources(root, cfg.sources)
    if has_dataset(root):
        return "present"
    if cfg.synthetic is not None:
        s = cfg.synthetic
        generate_dataset(root, s.videos, s.seed, width=s.width, height=s.height, frames=s.frames, fps=s.fps,
                         glove_dim=s.glove_dim, progress=progress, world=s.world)
        return "generated"
    raise UserError(f"dataset.root {root} holds no MSVD-QA dataset (train_qa.json, val_qa.json, test_qa.json, "
                    "youtube_mapping.txt, video/) and no dataset.sources or dataset.synthetic is configured")
