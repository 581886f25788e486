"""The feature store: Zarr arrays in an Icechunk repository, every write a commit, every read a version.

Layout: `<dataset>/<kind>/<spec-hash>/<array>`. A group's spec is stored in its attributes and the hash of
the spec is its name, so two configurations live side by side. Only this package imports zarr and icechunk.

Writes. A `Store` opened for writing commits each change it is asked for (a "direct" commit), which suits
small drivers and tests. A stage batches instead: its driver `fork`s a group reference for each task,
the workers write their rows into those forked sessions (icechunk's cooperative writes; a fork pickles, so
the workers may be threads or Dask processes), and the driver `transact`s once per finished batch:
merge the forks, record completion and attributes, commit, with a message and commit metadata that name
the stage, the flow run and the counts. Completion is one chunk per row, so writers of different videos
never touch the same chunk. On a local folder an exclusive lock (filelock) serialises commits, which
icechunk documents as unsafe there otherwise; on object storage a commit that loses the race is rebased
when nothing conflicts, and otherwise applied again on the new tip (attributes are read-modify-write).

Reads. `Store(path, mode="r")` reads the branch tip as one snapshot; `snapshot=` (an id or a tag) reads
an older version. References made by a read-only store carry the snapshot id, so a DataLoader or Dask
worker that reopens a group reads exactly the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import icechunk
import numpy as np
import zarr
from filelock import FileLock, Timeout
from zarr.codecs import ZstdCodec
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from configs.errors import UserError
from storage.location import StoreLocation

COMPLETE = "complete"  # uint8 [N], one chunk per row: 1 once the driver committed the row's data
BLOB = "msvqa_blob"  # array attribute marking a uint8 array that holds one file's bytes (e.g. vocab.json)
LOCK_NAME = "msvqa-commit.lock"
COMMIT_LOCK_TIMEOUT_S = 600.0
_WRITE_SLICE = 1 << 20  # bytes per write() call when storing a chunk in a plain Zarr folder
_SNAPSHOT_ID = re.compile(r"^[0-9A-Z]{20}$")
T = TypeVar("T")

if "ICECHUNK_LOG" not in os.environ:
    # icechunk warns on every local repository that concurrent commits are unsafe; the commit lock
    # below is the answer to that, so only its errors are worth printing.
    icechunk.set_logs_filter("error")


class SlicedWriteStore(LocalStore):
    """A LocalStore that hands each stored object to the kernel 1 MiB at a time (plain Zarr, benchmarks only).

    One write() of a chunk of many megabytes cost the clip stage's workers about a third more CPU than
    the same bytes in 1 MiB writes. Writes stay atomic: a temporary file in the same folder, renamed over
    the target, as LocalStore does.
    """

    async def set(self, key: str, value: Buffer) -> None:
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


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class GroupRef:
    """Where a spec group lives: enough to reopen it in another process, at the same version.

    `store` is the store's location (its `snapshot` pins reads); `session`, when set, is the icechunk
    session to use as is: a read-only one (pinned reads) or a fork (a worker's writes, see `Store.fork`).
    """

    store: StoreLocation | str
    path: str  # e.g. "msvd_qa/clips/1a2b3c4d5e6f"
    session: Any = field(default=None, compare=False, repr=False)

    @property
    def spec_hash(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def location(self) -> StoreLocation:
        return StoreLocation.of(self.store)

    @property
    def snapshot(self) -> str | None:
        return self.location.snapshot


# ---------------------------------------------------------------------------------------------------
# Views: the same group API over a read-only snapshot, a writable session, or a store that commits.


class _View:
    """A root group to read from and a way to apply a change (`_mutate`)."""

    location: StoreLocation
    writable: bool = False

    def _root(self) -> zarr.Group:
        raise NotImplementedError

    def _mutate(self, change: Callable[["_SessionView"], T], what: str) -> T:
        raise NotImplementedError

    @property
    def pinned(self) -> bool:
        """Whether what this view reads can never change (a read-only snapshot)."""
        return False

    def _ref(self, path: str) -> GroupRef:
        return GroupRef(self.location, path)

    # Namespace reads
    def _has(self, path: str) -> bool:
        return path in self._root()

    def has_group(self, path: str) -> bool:
        return self._has(path)

    def open(self, ref: GroupRef | str) -> "SpecGroup":
        path = ref.path if isinstance(ref, GroupRef) else ref
        if not self._has(path):
            raise KeyError(f"store {self.location.url} has no group {path}")
        return SpecGroup(self, self._ref(path))

    def peek(self, dataset: str, kind: str, spec: dict[str, Any]) -> "SpecGroup | None":
        """The group for this spec when it exists; unlike `spec_group`, never creates it."""
        path = f"{dataset}/{kind}/{spec_hash(spec)}"
        return self.open(path) if self._has(path) else None

    def find(self, dataset: str, kind: str) -> list["SpecGroup"]:
        """Every group of one kind for a dataset, sorted by spec hash."""
        base = f"{dataset}/{kind}"
        root = self._root()
        if base not in root:
            return []
        return [self.open(f"{base}/{name}") for name in sorted(root[base].group_keys())]

    def datasets(self) -> list[str]:
        return sorted(self._root().group_keys())

    def kinds(self, dataset: str) -> list[str]:
        root = self._root()
        return sorted(root[dataset].group_keys()) if dataset in root else []

    def dataset_attrs(self, dataset: str) -> dict[str, Any]:
        """Records kept for a whole dataset (e.g. the annotation checksums reprocessing last saw)."""
        root = self._root()
        return dict(root[dataset].attrs) if dataset in root else {}

    # Namespace writes
    def spec_group(self, dataset: str, kind: str, spec: dict[str, Any]) -> "SpecGroup":
        """The group for this spec, created (with the spec in its attributes) when missing."""
        path = f"{dataset}/{kind}/{spec_hash(spec)}"
        if not self._has(path):
            def create(view: _SessionView) -> None:
                group = view._root().require_group(path)
                if "spec" not in group.attrs:
                    group.attrs.update({"spec": _jsonable(spec), "kind": kind})
            self._mutate(create, f"create group {path}")
        return SpecGroup(self, self._ref(path))

    def update_dataset_attrs(self, dataset: str, **values: Any) -> None:
        self._mutate(lambda view: view._root().require_group(dataset).attrs.update(_jsonable(values)),
                     f"update attributes of {dataset}")

    def delete(self, ref: GroupRef | str) -> None:
        """Remove a group (e.g. a half-written text group); older snapshots still hold it."""
        path = ref.path if isinstance(ref, GroupRef) else ref

        def remove(view: _SessionView) -> None:
            root = view._root()
            if path in root:
                del root[path]
        self._mutate(remove, f"delete group {path}")


class _SessionView(_View):
    """One icechunk session as it stands: a transaction's, a worker's fork, or a pinned read-only one."""

    def __init__(self, session: icechunk.Session, location: StoreLocation):
        self.session = session
        self.location = location
        self.writable = not session.read_only
        self._group: zarr.Group | None = None

    def _root(self) -> zarr.Group:
        if self._group is None:
            self._group = zarr.open_group(self.session.store, mode="a" if self.writable else "r",
                                          use_consolidated=False)
        return self._group

    @property
    def pinned(self) -> bool:
        return not self.writable

    def _ref(self, path: str) -> GroupRef:
        if self.writable:
            return GroupRef(self.location.at(None), path)
        return GroupRef(self.location.at(self.session.snapshot_id), path, self.session)

    def _mutate(self, change: Callable[["_SessionView"], T], what: str) -> T:
        if not self.writable:
            raise PermissionError(f"store {self.location.url} is open read-only; cannot {what}")
        return change(self)


class Transaction(_SessionView):
    """The driver's side of one commit: read and write any group; `Store.transact` commits it."""

    def merge(self, *forks: icechunk.ForkSession) -> None:
        """Bring the workers' writes (their forked sessions) into this commit."""
        forks = tuple(f for f in forks if f is not None)
        if forks:
            self.session.merge(*forks)


# ---------------------------------------------------------------------------------------------------


class SpecGroup:
    """One spec-named group: preallocated arrays, completion flags, quarantine and padding records."""

    def __init__(self, view: _View, ref: GroupRef):
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

    def _change(self, what: str, change: Callable[["SpecGroup"], T]) -> T:
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
        self._change("update attributes", lambda g: g._group.attrs.update(_jsonable(values)))

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

        def create(group: SpecGroup) -> None:
            if not group.has_array(name):
                group._group.create_array(name, shape=shape, chunks=chunks or shape, dtype=dtype,
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
                "compression": ", ".join(_codec_name(codec) for codec in array.compressors) or "none",
            })
        return infos

    # Completion: written by the driver only, in the commit that brings the rows' data.
    def completed(self) -> np.ndarray:
        return self.read(COMPLETE).astype(bool)

    def mark_complete(self, rows: Iterable[int]) -> None:
        rows = sorted(set(int(r) for r in rows))
        self.write_rows(COMPLETE, rows, [1] * len(rows))

    def mark_incomplete(self, rows: Iterable[int]) -> None:
        """Driver only: the rows' data is stale (its video changed or left the dataset) and must not be used."""
        rows = sorted(set(int(r) for r in rows))
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


# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    id: str
    time: str
    message: str
    stage: str | None
    flow_run: str | None
    counts: dict[str, Any]
    parent: str | None
    tags: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "message": self.message, "stage": self.stage,
                "flow_run": self.flow_run, "counts": self.counts, "parent": self.parent, "tags": self.tags}


def is_plain_zarr(path: Path) -> bool:
    """A folder in the layout of the stores before versioning (a Zarr v3 hierarchy, no icechunk refs)."""
    return (path / "zarr.json").is_file() and not (path / "refs").exists()


def _plain_store_error(path: Path) -> UserError:
    return UserError(f"store.path {path} is a plain Zarr store from before versioning: convert it with "
                     f"`msvqa store import {path} NEW` and point store.path at NEW, or set a new store.path "
                     "and rerun the stages")


_repo_cache: dict[tuple, icechunk.Repository] = {}
_repo_cache_lock = threading.Lock()
_state = {"used": False, "forked_after_use": False}


def _after_fork_in_child() -> None:
    # icechunk's I/O runtime does not survive os.fork(): a child forked after the parent used the store
    # would hang on its first read. Such a child gets an error that says what to do instead.
    _state["forked_after_use"] = _state["used"]
    _repo_cache.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_not_forked() -> None:
    if _state["forked_after_use"]:
        raise RuntimeError("this process was forked after its parent used the store, and the store's I/O cannot "
                           "cross a fork: start worker processes with 'forkserver' or 'spawn' (DataLoader: "
                           "multiprocessing_context=storage.qa_dataset.loader_context(num_workers))")


def open_repository(location: StoreLocation, create: bool) -> icechunk.Repository:
    """The icechunk repository at `location`; refuses today's plain-Zarr folders with a way to convert them."""
    if location.is_local:
        path = location.local_path
        if path.exists():
            if is_plain_zarr(path):
                raise _plain_store_error(path)
            if path.is_file() or (any(path.iterdir()) and not (path / "refs").exists()):
                raise UserError(f"store.path {path} exists and is not a store: choose an empty or new folder")
    _check_not_forked()
    _state["used"] = True
    key = (location.url, location.endpoint_url, location.region)
    with _repo_cache_lock:
        repo = _repo_cache.get(key)
        if repo is not None:
            return repo
    storage = location.storage()
    if not icechunk.Repository.exists(storage):
        if not create:
            raise FileNotFoundError(f"store {location.url} does not exist")
        try:
            repo = icechunk.Repository.open_or_create(storage)
        except icechunk.IcechunkError:  # another process created it a moment ago
            repo = icechunk.Repository.open(storage)
    else:
        repo = icechunk.Repository.open(storage)
    with _repo_cache_lock:
        _repo_cache[key] = repo
    return repo


class Store(_View):
    """A versioned Zarr store: a local folder (default) or `s3://BUCKET/PREFIX`.

    mode "r": reads one snapshot (the branch tip, or `snapshot`: an id or a tag); mode "a": reads the
    branch tip and commits every change it is asked for (use `transact` to commit many at once).
    """

    def __init__(self, path: StoreLocation | Path | str, mode: str = "a", *, snapshot: str | None = None,
                 endpoint_url: str | None = None, region: str | None = None):
        if mode not in ("r", "a"):
            raise ValueError(f"mode {mode!r}: use 'r' or 'a'")
        location = StoreLocation.of(path, endpoint_url=endpoint_url, region=region, snapshot=snapshot)
        if mode == "a" and location.snapshot is not None:
            raise UserError(f"store.snapshot {location.snapshot} is for reading: writing stages write the "
                            f"tip of branch {location.branch}, so unset store.snapshot for them")
        self.mode = mode
        self.writable = mode == "a"
        self.repo = open_repository(location, create=self.writable)
        self.path: Path | str = location.local_path if location.is_local else location.url
        self._lock = threading.RLock()
        self._read_view: _SessionView | None = None
        self.last_commit: str | None = None
        self.location = location
        if self.writable:
            self._ensure_root()
        else:
            snapshot_id = self.resolve(location.snapshot) if location.snapshot else self.repo.lookup_branch(
                location.branch)
            self.location = location.at(snapshot_id)
            self._read_view = _SessionView(self.repo.readonly_session(snapshot_id=snapshot_id), self.location)

    # -- reading ------------------------------------------------------------------------------------
    @property
    def snapshot_id(self) -> str:
        """The snapshot this store reads: fixed when read-only, the branch tip when writable."""
        return self._reader().session.snapshot_id

    def _reader(self) -> _SessionView:
        if not self.writable:
            assert self._read_view is not None
            return self._read_view
        tip = self.repo.lookup_branch(self.location.branch)
        view = self._read_view
        if view is None or view.session.snapshot_id != tip:
            view = self._read_view = _SessionView(self.repo.readonly_session(snapshot_id=tip),
                                                  self.location.at(tip))
        return view

    def _root(self) -> zarr.Group:
        return self._reader()._root()

    @property
    def pinned(self) -> bool:
        return not self.writable

    def _ref(self, path: str) -> GroupRef:
        if self.writable:
            return GroupRef(self.location, path)
        return GroupRef(self.location, path, self._read_view.session if self._read_view else None)

    def read_ref(self, ref: GroupRef | str) -> GroupRef:
        """A reference that reads `ref`'s group at this store's current snapshot, from any process."""
        path = ref.path if isinstance(ref, GroupRef) else ref
        view = self._reader()
        return GroupRef(view.location, path, view.session)

    def at(self, snapshot: str | None = None) -> "Store":
        """This store read-only at a snapshot id or tag (the branch tip when None)."""
        return Store(self.location.at(None), mode="r", snapshot=snapshot)

    # -- writing ------------------------------------------------------------------------------------
    def _ensure_root(self) -> None:
        if self.repo.lookup_branch(self.location.branch) is not None:
            session = self.repo.readonly_session(branch=self.location.branch)
            try:
                zarr.open_group(session.store, mode="r", use_consolidated=False)
                return
            except (FileNotFoundError, zarr.errors.GroupNotFoundError if hasattr(zarr.errors, "GroupNotFoundError")
                    else FileNotFoundError):
                pass
        self.transact(lambda tx: tx._root().attrs.update({"msvqa_store": 1}) if "msvqa_store" not in
                      tx._root().attrs else None, stage="create", message="msvqa store created")

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        """Exclusive across processes for a local folder (icechunk's local commits are not safe otherwise)."""
        if not self.location.is_local:
            yield
            return
        lock = FileLock(str(self.location.local_path / LOCK_NAME), timeout=COMMIT_LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except Timeout:
            raise UserError(f"store.path {self.location.local_path} stayed locked by another writer for "
                            f"{COMMIT_LOCK_TIMEOUT_S:.0f} s ({LOCK_NAME}); is a stage stuck?") from None

    def fork(self, ref: GroupRef | str) -> GroupRef:
        """A reference a worker writes through: its rows go to a forked session that `transact` merges."""
        if not self.writable:
            raise PermissionError(f"store {self.location.url} is open read-only")
        path = ref.path if isinstance(ref, GroupRef) else ref
        session = self.repo.writable_session(self.location.branch)
        return GroupRef(self.location, path, session.fork())

    def transact(self, apply: Callable[[Transaction], T], *, stage: str, message: str | None = None,
                 flow_run: str | None = None, counts: dict[str, Any] | None = None,
                 forks: Iterable[Any] = (), attempts: int = 50) -> T:
        """Apply `apply` to a new session at the branch tip, merge `forks`, and commit it all at once.

        `apply` may run more than once (a commit that lost a race on object storage is applied again on
        the new tip), so it must only read and write the store. Returns what `apply` returned; the new
        snapshot id is `last_commit`. Nothing changed, nothing committed.
        """
        if not self.writable:
            raise PermissionError(f"store {self.location.url} is open read-only")
        forks = [f for f in forks if f is not None]
        counts = _jsonable(counts or {})
        text = message or stage
        details = ", ".join(f"{k} {v}" for k, v in counts.items())
        full_message = f"{stage}: {text}" if text != stage else stage
        if details:
            full_message += f" ({details})"
        if flow_run:
            full_message += f" [flow run {flow_run}]"
        metadata = {"stage": stage, "flow_run": flow_run, "counts": counts, "pid": os.getpid()}
        delay = 0.05
        with self._lock:
            for attempt in range(attempts):
                with self.commit_lock():
                    session = self.repo.writable_session(self.location.branch)
                    tx = Transaction(session, self.location.at(None))
                    if forks:
                        tx.merge(*forks)
                    result = apply(tx)
                    if not session.has_uncommitted_changes:
                        return result
                    try:
                        self.last_commit = session.commit(full_message, metadata=metadata,
                                                          rebase_with=icechunk.ConflictDetector(), rebase_tries=5)
                        return result
                    except (icechunk.ConflictError, icechunk.RebaseFailedError):
                        if attempt == attempts - 1:
                            raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _mutate(self, change: Callable[[_SessionView], T], what: str) -> T:
        if not self.writable:
            raise PermissionError(f"store {self.location.url} is open read-only; cannot {what}")
        return self.transact(change, stage="direct", message=what)

    # -- versions -----------------------------------------------------------------------------------
    def resolve(self, version: str | None) -> str:
        """The snapshot id of a tag, a snapshot id or a branch name (None: the branch tip)."""
        if version is None:
            return self.repo.lookup_branch(self.location.branch)
        if version in self.repo.list_tags():
            return self.repo.lookup_tag(version)
        if _SNAPSHOT_ID.match(version):
            try:
                return self.repo.lookup_snapshot(version).id
            except icechunk.IcechunkError:
                pass
        if version in self.repo.list_branches():
            return self.repo.lookup_branch(version)
        raise UserError(f"store.snapshot {version} is neither a tag nor a snapshot id of store {self.location.url} "
                        "(`msvqa store log` lists them)")

    def tags(self) -> dict[str, str]:
        return {name: self.repo.lookup_tag(name) for name in sorted(self.repo.list_tags())}

    def tag(self, name: str, snapshot_id: str | None = None) -> str:
        """Name a snapshot (the branch tip by default); a tag keeps its snapshot through `gc`."""
        target = self.resolve(snapshot_id)
        if name in self.repo.list_tags():
            if self.repo.lookup_tag(name) == target:
                return target
            raise UserError(f"tag {name} already names snapshot {self.repo.lookup_tag(name)} in store "
                            f"{self.location.url}; choose another name")
        self.repo.create_tag(name, target)
        return target

    def log(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits of the branch, newest first: id, time, message, stage, flow run, counts, parent, tags."""
        tags_of: dict[str, list[str]] = {}
        for name, snap in self.tags().items():
            tags_of.setdefault(snap, []).append(name)
        commits = []
        for info in self.repo.ancestry(branch=self.location.branch):
            meta = dict(info.metadata or {})
            commits.append(Commit(id=info.id, time=info.written_at.isoformat(), message=info.message,
                                  stage=meta.get("stage"), flow_run=meta.get("flow_run"),
                                  counts=dict(meta.get("counts") or {}), parent=info.parent_id,
                                  tags=tags_of.get(info.id, [])).as_dict())
            if limit is not None and len(commits) >= limit:
                break
        return commits

    def gc(self, keep: int, protect: Iterable[str] = (), grace_s: float = 3600.0) -> dict[str, Any]:
        """Expire all but the `keep` newest commits and delete what only they used.

        Never a tagged snapshot, nor one in `protect` (e.g. the snapshots registered models were trained
        on: each gets a tag `keep-<id>` first, so it stays readable). Objects newer than `grace_s` are
        never deleted: a writer may be about to commit them.
        """
        if keep < 1:
            raise UserError("--keep must be at least 1: the branch tip is always kept")
        protected = [self.resolve(p) for p in protect]
        with self._lock, self.commit_lock():
            for snapshot_id in protected:
                name = f"keep-{snapshot_id}"
                if name not in self.repo.list_tags():
                    self.repo.create_tag(name, snapshot_id)
            history = list(self.repo.ancestry(branch=self.location.branch))
            expired: set[str] = set()
            if len(history) > keep:
                threshold = history[keep - 1].written_at
                # icechunk reports every snapshot it cut out of the branch's history, tagged ones too;
                # a tag still points at its snapshot, so garbage collection keeps those.
                expired = set(self.repo.expire_snapshots(older_than=threshold)) - set(self.tags().values())
            cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=grace_s)
            summary = self.repo.garbage_collect(cutoff)
        return {"expired": sorted(expired), "kept": min(keep, len(history)), "protected": protected,
                "tags": self.tags(), "snapshots_deleted": summary.snapshots_deleted,
                "chunks_deleted": summary.chunks_deleted, "bytes_deleted": summary.bytes_deleted,
                "manifests_deleted": summary.manifests_deleted}


def open_group(ref: GroupRef, mode: str = "a") -> SpecGroup:
    """Reopen a group from its reference, e.g. inside a Dask worker or a DataLoader worker.

    A reference carrying a forked session writes into that fork (return `handoff()` to the driver); one
    carrying a read-only session, or a pinned snapshot, reads exactly that version.
    """
    _check_not_forked()
    _state["used"] = True
    location = ref.location
    if ref.session is not None:
        if mode == "a" and ref.session.read_only:
            raise PermissionError(f"group {ref.path} was handed out for reading at snapshot {location.snapshot}")
        view = _SessionView(ref.session, location.at(None) if not ref.session.read_only
                            else location.at(ref.session.snapshot_id))
        return view.open(ref.path)
    if location.snapshot is not None:
        return Store(location, mode="r").open(ref.path)
    return Store(location, mode=mode).open(ref.path)


def store_exists(where: StoreLocation | Path | str, endpoint_url: str | None = None, region: str | None = None) -> bool:
    location = StoreLocation.of(where, endpoint_url=endpoint_url, region=region)
    if location.is_local:
        path = location.local_path
        if not path.exists():
            return False
        if is_plain_zarr(path):
            raise _plain_store_error(path)
    return icechunk.Repository.exists(location.storage())


def open_store(cfg: Any, mode: str = "a") -> Store:
    """The store a config names (`configs.schema.StoreConfig`: path, endpoint_url, region, snapshot)."""
    return Store(cfg.path, mode=mode, snapshot=cfg.snapshot, endpoint_url=cfg.endpoint_url, region=cfg.region)


@contextlib.contextmanager
def row_writer(ref: GroupRef, stage: str) -> Iterator[SpecGroup]:
    """A worker's group for writing rows.

    With a forked reference (`Store.fork`) the rows stay in the fork: return `group.handoff()` to the
    driver, which commits them with the batch's completion. With a plain reference the block's rows are
    committed together at its end (data only: completion stays the driver's).
    """
    if ref.session is not None:
        yield open_group(ref)
        return
    store = Store(ref.location)
    group = open_group(store.fork(ref))
    yield group
    store.transact(lambda tx: None, stage=stage, message=f"rows of {ref.path}", forks=[group.handoff()])
