"""The feature store: Zarr arrays in an Icechunk repository, every write a commit, every read a version.

Layout: `<dataset>/<kind>/<spec-hash>/<array>`. A group's spec is stored in its attributes and the hash of
the spec is its name, so two configurations live side by side. Only this package imports zarr and icechunk.

The parts: `refs` (spec hashes, group references), `group` (SpecGroup: arrays, completion, records),
`views` (the group API over a snapshot, a session or a committing store), `transactions` (commits, the
local commit lock, forks for workers), `versions` (tags, log, gc), `repository` (opening repositories,
fork safety), `plain` (the layout before versioning). This module puts them together as `Store`.

Writes. A stage's driver `fork`s a group reference for each task, the workers write their rows into those
forked sessions (icechunk's cooperative writes), and the driver `transact`s once per finished batch.
Completion is one chunk per row, so writers of different videos never touch the same chunk. On a local
folder an exclusive lock (filelock) serialises commits, which icechunk documents as unsafe there otherwise;
on object storage a commit that loses the race is rebased when nothing conflicts, and otherwise applied
again on the new tip (attributes are read-modify-write).

Reads. `Store(path, mode="r")` reads the branch tip as one snapshot; `snapshot=` (an id or a tag) reads
an older version. References made by a read-only store carry the snapshot id, so a DataLoader or Dask
worker that reopens a group reads exactly the same version. `open_store(config.store, mode)` is how the
stages open the configured store (path, endpoint, region and snapshot together).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zarr

from configs.errors import UserError
from storage.group import SpecGroup
from storage.location import StoreLocation
from storage.plain import SlicedWriteStore, _write_atomically_in_slices, is_plain_zarr
from storage.refs import BLOB, COMPLETE, GroupRef, spec_hash
from storage.repository import check_not_forked, open_repository, state, store_exists
from storage.transactions import COMMIT_LOCK_TIMEOUT_S, LOCK_NAME, Transactional
from storage.versions import Commit, Versioned
from storage.views import Transaction, _SessionView, _View

__all__ = [
    "BLOB",
    "COMMIT_LOCK_TIMEOUT_S",
    "COMPLETE",
    "LOCK_NAME",
    "Commit",
    "GroupRef",
    "SlicedWriteStore",
    "SpecGroup",
    "Store",
    "StoreLocation",
    "Transaction",
    "_write_atomically_in_slices",
    "is_plain_zarr",
    "open_group",
    "open_repository",
    "open_store",
    "row_writer",
    "spec_hash",
    "store_exists",
]


class Store(Transactional, Versioned, _View):
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

    def at(self, snapshot: str | None = None) -> Store:
        """This store read-only at a snapshot id or tag (the branch tip when None)."""
        return Store(self.location.at(None), mode="r", snapshot=snapshot)

    # -- writing ------------------------------------------------------------------------------------
    def _ensure_root(self) -> None:
        if self.repo.lookup_branch(self.location.branch) is not None:
            session = self.repo.readonly_session(branch=self.location.branch)
            try:
                zarr.open_group(session.store, mode="r", use_consolidated=False)
                return
            except FileNotFoundError:  # zarr's GroupNotFoundError is one: the branch holds no root group yet
                pass
        self.transact(lambda tx: tx._root().attrs.update({"msvqa_store": 1}) if "msvqa_store" not in
                      tx._root().attrs else None, stage="create", message="msvqa store created")


def open_group(ref: GroupRef, mode: str = "a") -> SpecGroup:
    """Reopen a group from its reference, e.g. inside a Dask worker or a DataLoader worker.

    A reference carrying a forked session writes into that fork (return `handoff()` to the driver); one
    carrying a read-only session, or a pinned snapshot, reads exactly that version.
    """
    check_not_forked()
    state["used"] = True
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
