"""Views: the same group API over a read-only snapshot, a writable session, or a store that commits each change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import icechunk
import zarr

from storage.group import SpecGroup
from storage.location import StoreLocation
from storage.refs import GroupRef, T, jsonable, spec_hash


class _View:
    """A root group to read from and a way to apply a change (`_mutate`)."""

    location: StoreLocation
    writable: bool = False

    def _root(self) -> zarr.Group:
        raise NotImplementedError

    def _mutate(self, change: Callable[[_SessionView], T], what: str) -> T:
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

    def open(self, ref: GroupRef | str) -> SpecGroup:
        path = ref.path if isinstance(ref, GroupRef) else ref
        if not self._has(path):
            raise KeyError(f"store {self.location.url} has no group {path}")
        return SpecGroup(self, self._ref(path))

    def peek(self, dataset: str, kind: str, spec: dict[str, Any]) -> SpecGroup | None:
        """The group for this spec when it exists; unlike `spec_group`, never creates it."""
        path = f"{dataset}/{kind}/{spec_hash(spec)}"
        return self.open(path) if self._has(path) else None

    def find(self, dataset: str, kind: str) -> list[SpecGroup]:
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
    def spec_group(self, dataset: str, kind: str, spec: dict[str, Any]) -> SpecGroup:
        """The group for this spec, created (with the spec in its attributes) when missing."""
        path = f"{dataset}/{kind}/{spec_hash(spec)}"
        if not self._has(path):
            def create(view: _SessionView) -> None:
                group = view._root().require_group(path)
                if "spec" not in group.attrs:
                    group.attrs.update({"spec": jsonable(spec), "kind": kind})
            self._mutate(create, f"create group {path}")
        return SpecGroup(self, self._ref(path))

    def update_dataset_attrs(self, dataset: str, **values: Any) -> None:
        self._mutate(lambda view: view._root().require_group(dataset).attrs.update(jsonable(values)),
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

    def _mutate(self, change: Callable[[_SessionView], T], what: str) -> T:
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

