"""Bring a dataset into `dataset.root`: copy local sources, or generate the synthetic one."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from configs.errors import UserError
from configs.schema import DatasetConfig, Source
from tasks.layout import has_dataset
from tasks.synth import generate_dataset


def local_source_path(source: Source) -> Path:
    parsed = urlparse(source.url)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme == "file" else source.url)
    raise UserError(f"dataset.sources: {source.url!r}: only local paths and file:// URLs are supported so far")


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


def ensure_dataset(cfg: DatasetConfig, progress=None) -> str:
    """Make sure `cfg.root` holds an MSVD-QA-layout dataset; returns what was done."""
    root = Path(cfg.root)
    if has_dataset(root):
        return "present"
    if cfg.sources:
        root.mkdir(parents=True, exist_ok=True)
        for source in cfg.sources:
            copy_source(source, root)
        return "copied"
    if cfg.synthetic is not None:
        s = cfg.synthetic
        generate_dataset(root, s.videos, s.seed, width=s.width, height=s.height, frames=s.frames, fps=s.fps,
                         glove_dim=s.glove_dim, progress=progress)
        return "generated"
    raise UserError(f"dataset.root {root} holds no MSVD-QA dataset (train_qa.json, val_qa.json, test_qa.json, "
                    "youtube_mapping.txt, video/) and no dataset.sources or dataset.synthetic is configured")
