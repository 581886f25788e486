"""Versions: snapshot ids and tags, the commit log, and garbage collection of expired snapshots."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import icechunk

from configs.errors import UserError
from storage.location import StoreLocation

_SNAPSHOT_ID = re.compile(r"^[0-9A-Z]{20}$")


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


class Versioned:
    """The versions half of `Store`: resolve, tag, log and collect the snapshots of its branch."""

    repo: icechunk.Repository
    location: StoreLocation
    _lock: threading.RLock

    def commit_lock(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

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

    def has_snapshot(self, snapshot_id: str) -> bool:
        """Whether this repository holds the snapshot (ids from another store, or collected ones, do not)."""
        if not _SNAPSHOT_ID.match(snapshot_id):
            return False
        try:
            self.repo.lookup_snapshot(snapshot_id)
        except icechunk.IcechunkError:
            return False
        return True

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
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=grace_s)
            summary = self.repo.garbage_collect(cutoff)
        return {"expired": sorted(expired), "kept": min(keep, len(history)), "protected": protected,
                "tags": self.tags(), "snapshots_deleted": summary.snapshots_deleted,
                "chunks_deleted": summary.chunks_deleted, "bytes_deleted": summary.bytes_deleted,
                "manifests_deleted": summary.manifests_deleted}
