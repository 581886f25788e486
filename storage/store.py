"""The Zarr store behind one small API: spec-named groups, one video per chunk, driver-recorded completion.

Layout: `<dataset>/<kind>/<spec-hash>/<array>`. A group's spec is stored in its attributes and the hash of
the spec is its name, so two configurations live side by side. Only this package imports zarr.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

COMPLETE = "complete"  # uint8 [N]: 1 once the driver has seen the row's data written
_WRITE_SLICE = 1 << 20  # bytes per write() call when storing a chunk


class SlicedWriteStore(LocalStore):
    """A LocalStore that hands each stored object to the kernel 1 MiB at a time.

    One write() of a chunk of many megabytes (a clip row is 5-20 MB) cost the clip stage's workers
    about a third more CPU than the same bytes in 1 MiB writes on the machine measured
    (benchmarks/clips.py: 8.0-8.8 -> 10.1-10.4 videos/s). Writes stay atomic: a temporary file in the
    same folder, renamed over the target, as LocalStore does.
    """

    async def set(self, key: str, value: Buffer) -> None:
        # The same checks as LocalStore._set (zarr 3.1), with the write itself replaced.
        if not self._is_open:
            await self._open()
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"SlicedWriteStore.set(): value must be a Buffer, got {type(value).__name__}")
        await asyncio.to_thread(_write_atomically_in_slices, self.root / key, value.as_buffer_like())


def _write_atomically_in_slices(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    view = memoryview(data).cast("B")
    partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")
    try:
        with partial.open("wb") as file:
            for start in range(0, len(view), _WRITE_SLICE):
                file.write(view[start:start + _WRITE_SLICE])
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _codec_name(codec: Any) -> str:
    level = getattr(codec, "level", None)
    name = type(codec).__name__.removesuffix("Codec").lower()
    return name if level is None else f"{name} level {level}"


def spec_hash(spec: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able spec (key order does not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class GroupRef:
    """Where a spec group lives: enough to reopen it in another process."""

    store: str
    path: str  # e.g. "msvd_qa/clips/1a2b3c4d5e6f"

    @property
    def spec_hash(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class SpecGroup:
    """One spec-named group: preallocated arrays, completion flags, quarantine and padding records."""

    def __init__(self, group: zarr.Group, ref: GroupRef):
        self._group = group
        self.ref = ref

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._group.attrs.get("spec", {}))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    def update_attrs(self, **values: Any) -> None:
        self._group.attrs.update(values)

    def ensure_array(self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None = None,
                     fill_value: Any = 0, compression_level: int | None = 1) -> None:
        """Create `name` unless it exists with this shape and dtype (a resumed run keeps its data and codec).

        `compression_level` is zstd's (negative levels are its fast ones); None stores the chunks raw.
        """
        if name in self._group.array_keys():
            existing = self._group[name]
            if tuple(existing.shape) == tuple(shape) and np.dtype(existing.dtype) == np.dtype(dtype):
                return
            raise ValueError(f"array {self.ref.path}/{name} exists with shape {existing.shape}, not {shape}")
        # zstd level 1 by default: it writes ~3x faster than zstd's default level for a few percent more
        # bytes (benchmarks/clips.py); the clip stage picks its own (clips.compression_level).
        compressors = None if compression_level is None else ZstdCodec(level=compression_level)
        self._group.create_array(name, shape=shape, chunks=chunks or shape, dtype=dtype, fill_value=fill_value,
                                 compressors=compressors)

    def has_array(self, name: str) -> bool:
        # A direct lookup: listing members would warn about the non-Zarr files some groups keep (vocab.json).
        return name in self._group and isinstance(self._group[name], zarr.Array)

    def write(self, name: str, value: np.ndarray, row: int | None = None) -> None:
        """Write a whole array (row None) or one row; with one row per chunk, writers never collide."""
        array = self._group[name]
        if row is None:
            array[...] = value
        else:
            # Skipping chunks that equal the fill value costs a full comparison per write (a third of a
            # clip row's write time) to save nothing: a written row is never all fill value in practice.
            array.with_config({"write_empty_chunks": True})[row] = value

    def read(self, name: str, rows: int | slice | np.ndarray | None = None) -> np.ndarray:
        array = self._group[name]
        if rows is None:
            return array[...]
        if isinstance(rows, np.ndarray):
            return array.get_orthogonal_selection((rows,))
        return array[rows]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._group[name].shape)

    @property
    def num_rows(self) -> int:
        """Rows along the video axis (axis 0 of the completion flags); 0 before the arrays exist."""
        return int(self._group[COMPLETE].shape[0]) if self.has_array(COMPLETE) else 0

    def grow(self, rows: int) -> list[str]:
        """Extend every array along axis 0 to `rows`; stored rows are kept, new rows read as the fill value.

        Driver only: resizing rewrites array metadata. Idempotent, so a crash between growing and
        recording the new index is repaired by the next run; shrinking is refused (rows are never reused).
        """
        grown = []
        for name in sorted(self._group.array_keys()):
            array = self._group[name]
            if array.shape[0] > rows:
                raise ValueError(f"array {self.ref.path}/{name} has {array.shape[0]} rows, more than {rows}")
            if array.shape[0] < rows:
                array.resize((rows, *array.shape[1:]))
                grown.append(name)
        return grown

    def array_info(self) -> list[dict[str, Any]]:
        infos = []
        for name in sorted(self._group.array_keys()):
            array = self._group[name]
            infos.append({
                "name": name,
                "path": f"{self.ref.path}/{name}",
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "chunks": list(array.chunks),
                "bytes_stored": int(array.nbytes_stored()),
                "compression": ", ".join(_codec_name(codec) for codec in array.compressors) or "none",
            })
        return infos

    # Completion: written by the driver only, after the workers returned.
    def completed(self) -> np.ndarray:
        return self.read(COMPLETE).astype(bool)

    def mark_complete(self, rows: Iterable[int]) -> None:
        flags = self.read(COMPLETE)
        flags[list(rows)] = 1
        self.write(COMPLETE, flags)

    def mark_incomplete(self, rows: Iterable[int]) -> None:
        """Driver only: the rows' data is stale (its video changed or left the dataset) and must not be used."""
        rows = list(rows)
        if not rows:
            return
        flags = self.read(COMPLETE)
        flags[rows] = 0
        self.write(COMPLETE, flags)

    def quarantined(self) -> dict[str, str]:
        return dict(self._group.attrs.get("quarantined", {}))

    def quarantine(self, reasons: dict[str, str]) -> None:
        merged = self.quarantined() | reasons
        self._group.attrs["quarantined"] = merged

    def release(self, names: Iterable[str]) -> None:
        """Forget the quarantine of `names` (their file changed), so the next run decodes them again."""
        names = set(names)
        if names & set(self.quarantined()):
            self._group.attrs["quarantined"] = {k: v for k, v in self.quarantined().items() if k not in names}

    def padded(self) -> list[str]:
        return list(self._group.attrs.get("padded", []))

    def record_padded(self, names: Iterable[str]) -> None:
        self._group.attrs["padded"] = sorted(set(self.padded()) | set(names))


class Store:
    """A Zarr store on the local filesystem."""

    def __init__(self, path: Path | str, mode: str = "a"):
        self.path = Path(path)
        if mode == "r" and not self.path.exists():
            raise FileNotFoundError(f"store {self.path} does not exist")
        self._root = zarr.open_group(store=SlicedWriteStore(self.path, read_only=mode == "r"), mode=mode)

    def spec_group(self, dataset: str, kind: str, spec: dict[str, Any]) -> SpecGroup:
        """The group for this spec, created (with the spec in its attributes) when missing."""
        path = f"{dataset}/{kind}/{spec_hash(spec)}"
        group = self._root.require_group(path)
        if "spec" not in group.attrs:
            group.attrs.update({"spec": json.loads(json.dumps(spec, default=str)), "kind": kind})
        return SpecGroup(group, GroupRef(str(self.path), path))

    def peek(self, dataset: str, kind: str, spec: dict[str, Any]) -> SpecGroup | None:
        """The group for this spec when it exists; unlike `spec_group`, never creates it."""
        path = f"{dataset}/{kind}/{spec_hash(spec)}"
        return self.open(path) if path in self._root else None

    def dataset_attrs(self, dataset: str) -> dict[str, Any]:
        """Records kept for a whole dataset (e.g. the annotation checksums reprocessing last saw)."""
        return dict(self._root[dataset].attrs) if dataset in self._root else {}

    def update_dataset_attrs(self, dataset: str, **values: Any) -> None:
        self._root.require_group(dataset).attrs.update(values)

    def open(self, ref: GroupRef | str) -> SpecGroup:
        path = ref.path if isinstance(ref, GroupRef) else ref
        if path not in self._root:
            raise KeyError(f"store {self.path} has no group {path}")
        return SpecGroup(self._root[path], GroupRef(str(self.path), path))

    def find(self, dataset: str, kind: str) -> list[SpecGroup]:
        """Every group of one kind for a dataset, sorted by spec hash."""
        base = f"{dataset}/{kind}"
        if base not in self._root:
            return []
        return [self.open(f"{base}/{name}") for name in sorted(self._root[base].group_keys())]

    def delete(self, ref: GroupRef | str) -> None:
        path = ref.path if isinstance(ref, GroupRef) else ref
        # A half-written group (never completed) is removed whole so a rerun starts it clean.
        shutil.rmtree(self.path / path, ignore_errors=True)

    def datasets(self) -> list[str]:
        return sorted(self._root.group_keys())

    def kinds(self, dataset: str) -> list[str]:
        return sorted(self._root[dataset].group_keys()) if dataset in self._root else []


def open_group(ref: GroupRef, mode: str = "a") -> SpecGroup:
    """Reopen a group from its reference, e.g. inside a Dask worker or a DataLoader worker."""
    return Store(ref.store, mode=mode).open(ref)
