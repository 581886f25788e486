"""One spec-named group: its arrays, completion flags, quarantine and padding records, and small files."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import icechunk
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from storage.refs import BLOB, COMPLETE, GroupRef, T, codec_name, jsonable


class GroupView(Protocol):
    """What a group reads from and writes through (storage.views): declared here so views may import groups."""

    @property
    def pinned(self) -> bool: ...

    def _root(self) -> zarr.Group: ...

    def _ref(self, path: str) -> GroupRef: ...

    def _mutate(self, change: Callable[[Any], T], what: str) -> T: ...


class SpecGroup:
    """One spec-named group: preallocated arrays, completion flags, quarantine and padding records."""

    def __init__(self, view: GroupView, ref: GroupRef):
        self._view = view
        self.ref = ref
        self._arrays: dict[str, zarr.Array] = {}

    # Where reads come from
    @property
    def _group(self) -> zarr.Group:
        return self._view._root()[self.ref.path]

    def _array(self, name: str) -> zarr.Array:
        if self._view.pinned:
            array = self._arrays.get(name)
            if array is None:
                array = self._arrays[name] = self._group[name]
            return array
        return self._group[name]

    def _change(self, what: str, change: Callable[[SpecGroup], T]) -> T:
        path = self.ref.path
        return self._view._mutate(lambda view: change(SpecGroup(view, view._ref(path))),
                                  f"{what} in {path}")

    def handoff(self) -> icechunk.ForkSession | None:
        """A worker's writes, to return to the driver, which merges them into its next commit."""
        session = getattr(self._view, "session", None)
        return session if isinstance(session, icechunk.ForkSession) else None

    @property
    def snapshot_id(self) -> str | None:
        """The version this group is read at (None while it is being written)."""
        return self.ref.snapshot

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._group.attrs.get("spec", {}))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    def update_attrs(self, **values: Any) -> None:
        self._change("update attributes", lambda g: g._group.attrs.update(jsonable(values)))

    def ensure_array(self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None = None,
                     fill_value: Any = 0, compression_level: int | None = 1) -> None:
        """Create `name` unless it exists with this shape and dtype (a resumed run keeps its data and codec).

        `compression_level` is zstd's (negative levels are its fast ones); None stores the chunks raw.
        The completion flags are always one chunk per row, so writers of different rows never conflict.
        """
        if name == COMPLETE:
            chunks = (1,) * len(shape)
        if self.has_array(name):
            existing = self._array(name)
            if tuple(existing.shape) == tuple(shape) and np.dtype(existing.dtype) == np.dtype(dtype):
                return
            raise ValueError(f"array {self.ref.path}/{name} exists with shape {existing.shape}, not {shape}")
        # zstd level 1 by default: it writes ~3x faster than zstd's default level for a few percent more
        # bytes (benchmarks/clips.py); the clip stage picks its own (clips.compression_level).
        compressors = None if compression_level is None else ZstdCodec(level=compression_level)
        # A zero-length chunk is invalid chunk-grid metadata to Icechunk (an empty split's arrays are [0]).
        chunks = tuple(max(1, size) for size in (chunks or shape))

        def create(group: SpecGroup) -> None:
            if not group.has_array(name):
                group._group.create_array(name, shape=shape, chunks=chunks, dtype=dtype,
                                          fill_value=fill_value, compressors=compressors)
        self._change(f"create array {name}", create)

    def has_array(self, name: str) -> bool:
        group = self._group
        return name in group and isinstance(group[name], zarr.Array)

    def write(self, name: str, value: np.ndarray, row: int | None = None) -> None:
        """Write a whole array (row None) or one row; with one row per chunk, writers never collide."""
        def put(group: SpecGroup) -> None:
            array = group._group[name]
            if row is None:
                array[...] = value
            else:
                # Skipping chunks that equal the fill value costs a full comparison per write to save
                # nothing (a written row is never all fill value in practice), and in a versioned store
                # it would delete the row's chunk rather than write it.
                array.with_config({"write_empty_chunks": True})[row] = value
        self._change(f"write {name}" + ("" if row is None else f" row {row}"), put)

    def write_rows(self, name: str, rows: Iterable[int], values: Iterable[Any]) -> None:
        """Set single elements (or sub-arrays) of chosen rows; only those rows' chunks are written."""
        rows, values = list(rows), list(values)
        if not rows:
            return

        def put(group: SpecGroup) -> None:
            array = group._group[name].with_config({"write_empty_chunks": True})
            for row, value in zip(rows, values):
                array[row] = value
        self._change(f"write {len(rows)} rows of {name}", put)

    def read(self, name: str, rows: int | slice | np.ndarray | None = None) -> np.ndarray:
        array = self._array(name)
        if rows is None:
            return array[...]
        if isinstance(rows, np.ndarray):
            return array.get_orthogonal_selection((rows,))
        return array[rows]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._array(name).shape)

    @property
    def num_rows(self) -> int:
        """Rows along the video axis (axis 0 of the completion flags); 0 before the arrays exist."""
        return int(self.shape(COMPLETE)[0]) if self.has_array(COMPLETE) else 0

    def grow(self, rows: int) -> list[str]:
        """Extend every row array along axis 0 to `rows`; stored rows are kept, new rows read as fill value.

        Idempotent, and shrinking is refused (rows are never reused).
        """
        group = self._group
        to_grow = []
        for name in sorted(group.array_keys()):
            array = group[name]
            if array.attrs.get(BLOB):
                continue
            if array.shape[0] > rows:
                raise ValueError(f"array {self.ref.path}/{name} has {array.shape[0]} rows, more than {rows}")
            if array.shape[0] < rows:
                to_grow.append(name)
        if to_grow:
            def resize(group: SpecGroup) -> None:
                for name in to_grow:
                    array = group._group[name]
                    if array.shape[0] < rows:
                        array.resize((rows, *array.shape[1:]))
            self._change(f"grow to {rows} rows", resize)
        return to_grow

    def array_info(self) -> list[dict[str, Any]]:
        infos = []
        group = self._group
        for name in sorted(group.array_keys()):
            array = group[name]
            infos.append({
                "name": name,
                "path": f"{self.ref.path}/{name}",
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "chunks": list(array.chunks),
                "bytes_stored": int(array.nbytes_stored()),
                "compression": ", ".join(codec_name(codec) for codec in array.compressors) or "none",
            })
        return infos

    # Completion: written by the driver only, in the commit that brings the rows' data.
    def completed(self, rows: int | None = None) -> np.ndarray:
        """Completion flags per row; with `rows`, exactly that many, where rows the group does not hold (yet)
        read as not complete, as a derived group's flags are read against its clip group's rows."""
        flags = self.read(COMPLETE).astype(bool) if self.num_rows else np.zeros(0, dtype=bool)
        if rows is None:
            return flags
        padded = np.zeros(rows, dtype=bool)
        padded[:min(rows, len(flags))] = flags[:rows]
        return padded

    def mark_complete(self, rows: Iterable[int]) -> None:
        rows = sorted({int(r) for r in rows})
        self.write_rows(COMPLETE, rows, [1] * len(rows))

    def mark_incomplete(self, rows: Iterable[int]) -> None:
        """Driver only: the rows' data is stale (its video changed or left the dataset) and must not be used."""
        rows = sorted({int(r) for r in rows})
        self.write_rows(COMPLETE, rows, [0] * len(rows))

    def quarantined(self) -> dict[str, str]:
        return dict(self._group.attrs.get("quarantined", {}))

    def quarantine(self, reasons: dict[str, str]) -> None:
        if not reasons:
            return

        def merge(group: SpecGroup) -> None:
            current = group.quarantined()
            if any(current.get(k) != v for k, v in reasons.items()):
                group._group.attrs["quarantined"] = current | dict(reasons)
        self._change("quarantine", merge)

    def release(self, names: Iterable[str]) -> None:
        """Forget the quarantine of `names` (their file changed), so the next run decodes them again."""
        names = set(names)
        if names & set(self.quarantined()):
            self._change("release", lambda g: g._group.attrs.__setitem__(
                "quarantined", {k: v for k, v in g.quarantined().items() if k not in names}))

    def padded(self) -> list[str]:
        return list(self._group.attrs.get("padded", []))

    def record_padded(self, names: Iterable[str]) -> None:
        names = set(names)
        if names - set(self.padded()):
            self._change("record padding", lambda g: g._group.attrs.__setitem__(
                "padded", sorted(set(g.padded()) | names)))

    # Small files kept with a group (e.g. the text group's vocab.json), versioned with its arrays.
    def write_blob(self, name: str, data: bytes) -> None:
        def put(group: SpecGroup) -> None:
            zgroup = group._group
            if name in zgroup:
                del zgroup[name]
            array = zgroup.create_array(name, shape=(len(data),), chunks=(max(len(data), 1),), dtype="uint8",
                                        fill_value=0, compressors=ZstdCodec(level=3))
            array.attrs[BLOB] = True
            if data:
                array[...] = np.frombuffer(data, dtype=np.uint8)
        self._change(f"write {name}", put)

    def read_blob(self, name: str) -> bytes | None:
        if not self.has_array(name):
            return None
        return self.read(name).tobytes()

