"""Transactions: every write is one icechunk commit, serialised on a local folder, rebased or retried on S3.

A `Store` opened for writing commits each change it is asked for (a "direct" commit). A stage batches
instead: its driver `fork`s a group reference per task, the workers write rows into those forked sessions
(a fork pickles, so workers may be threads or Dask processes), and the driver `transact`s once per batch:
merge the forks, record completion and attributes, commit, with a message and metadata naming the stage,
the flow run and the counts.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import icechunk
from filelock import FileLock, Timeout

from configs.errors import UserError
from storage.location import StoreLocation
from storage.refs import GroupRef, T, jsonable
from storage.views import Transaction, _SessionView

LOCK_NAME = "msvqa-commit.lock"
COMMIT_LOCK_TIMEOUT_S = 600.0


def commit_message(stage: str, message: str | None, counts: dict[str, Any], flow_run: str | None) -> str:
    """`stage: message (counts) [flow run ID]`, what `msvqa store log` shows of a commit."""
    text = message or stage
    details = ", ".join(f"{k} {v}" for k, v in counts.items())
    full_message = f"{stage}: {text}" if text != stage else stage
    if details:
        full_message += f" ({details})"
    if flow_run:
        full_message += f" [flow run {flow_run}]"
    return full_message


class Transactional:
    """The writing half of `Store`: the commit lock, forks for workers, and `transact`."""

    repo: icechunk.Repository
    location: StoreLocation
    writable: bool
    last_commit: str | None
    _lock: threading.RLock

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
        counts = jsonable(counts or {})
        full_message = commit_message(stage, message, counts, flow_run)
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
