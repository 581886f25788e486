"""`msvqa store import OLD NEW`: copy a plain Zarr store (the layout before versioning) into a new store.

Every group keeps its path, attributes, arrays (shape, dtype, fill value, codec, chunking) and values;
the completion flags become one chunk per row, as the versioned store keeps them; a group's non-Zarr
files (the text group's vocab.json) become blobs of that group. One commit per spec group, so an
interrupted import resumes: a group already imported is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from configs.errors import UserError
from storage.location import StoreLocation
from storage.store import COMPLETE, SpecGroup, Store, Transaction, is_plain_zarr

_ROWS_PER_COPY_BYTES = 64 << 20


def _copy_array(source: zarr.Array, target_group: zarr.Group, name: str) -> None:
    chunks = tuple(source.chunks)
    if name == COMPLETE or (source.ndim == 1 and source.shape[0] > 1 and name in ("num_frames",)):
        chunks = (1,)
    compressors = source.compressors or None
    target = target_group.create_array(name, shape=source.shape, chunks=chunks, dtype=source.dtype,
                                       fill_value=source.fill_value, compressors=compressors,
                                       attributes=dict(source.attrs))
    if source.ndim == 0 or source.size == 0:
        target[...] = source[...]
        return
    row_bytes = max(1, int(np.prod(source.shape[1:], dtype=np.int64)) * source.dtype.itemsize)
    step = max(1, min(source.shape[0], _ROWS_PER_COPY_BYTES // row_bytes))
    step = max(step - step % chunks[0], chunks[0]) if chunks[0] <= step else step
    writer = target.with_config({"write_empty_chunks": False})
    for start in range(0, source.shape[0], step):
        writer[start:start + step] = source[start:start + step]


def _extra_files(folder: Path) -> dict[str, bytes]:
    """Files in a group's folder that are not Zarr (zarr.json, child folders, chunk folders)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "zarr.json" and not p.name.endswith(".partial")}


def _leaf_groups(root: zarr.Group) -> list[str]:
    """Paths of the spec groups: `<dataset>/<kind>/<hash>`."""
    paths = []
    for dataset, dgroup in root.groups():
        for kind, kgroup in dgroup.groups():
            for name, _ in kgroup.groups():
                paths.append(f"{dataset}/{kind}/{name}")
    return sorted(paths)


def _copy_tree(source: zarr.Group, target: zarr.Group) -> None:
    for name, array in source.arrays():
        _copy_array(array, target, name)
    for name, child in source.groups():
        sub = target.create_group(name, attributes=dict(child.attrs))
        _copy_tree(child, sub)


def import_plain_store(old: Path | str, new: StoreLocation | Path | str, endpoint_url: str | None = None,
                       region: str | None = None) -> dict[str, Any]:
    """Copy the plain Zarr store at `old` into the versioned store `new` (created when missing)."""
    old = Path(old)
    if not is_plain_zarr(old):
        raise UserError(f"{old} is not a plain Zarr store (no zarr.json, or already a versioned store)")
    source = zarr.open_group(store=LocalStore(old, read_only=True), mode="r")
    target = Store(new, endpoint_url=endpoint_url, region=region)
    imported, skipped = [], []
    for dataset, dgroup in source.groups():
        attrs = dict(dgroup.attrs)
        if attrs and target.dataset_attrs(dataset) != attrs:
            target.transact(lambda tx: tx._root().require_group(dataset).attrs.update(attrs), stage="import",
                            message=f"import attributes of {dataset} from {old}")
    for path in _leaf_groups(source):
        if target.has_group(path):
            skipped.append(path)
            continue
        group = source[path]
        files = _extra_files(old / path)

        def copy(tx: Transaction, path: str = path, group: zarr.Group = group, files: dict = files) -> None:
            root = tx._root()
            parent_path, _, name = path.rpartition("/")
            parent = root.require_group(parent_path)
            created = parent.create_group(name, attributes=dict(group.attrs))
            _copy_tree(group, created)
            spec_group = SpecGroup(tx, tx._ref(path))
            for file_name, data in files.items():
                spec_group.write_blob(file_name, data)
        target.transact(copy, stage="import", message=f"import {path} from {old}", counts={"groups": 1})
        imported.append(path)
    return {"from": str(old), "to": target.location.url, "imported": imported, "skipped": skipped,
            "snapshot": target.snapshot_id}
