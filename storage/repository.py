"""Opening icechunk repositories: one per location and process, never across a fork, never a plain Zarr folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import icechunk

from configs.errors import UserError
from storage.location import StoreLocation
from storage.plain import is_plain_zarr, plain_store_error

if "ICECHUNK_LOG" not in os.environ:
    # icechunk warns on every local repository that concurrent commits are unsafe; the commit lock
    # (storage.transactions) is the answer to that, so only its errors are worth printing.
    icechunk.set_logs_filter("error")


_repo_cache: dict[tuple, icechunk.Repository] = {}
_repo_cache_lock = threading.Lock()
state = {"used": False, "forked_after_use": False}


def _after_fork_in_child() -> None:
    # icechunk's I/O runtime does not survive os.fork(): a child forked after the parent used the store
    # would hang on its first read. Such a child gets an error that says what to do instead.
    state["forked_after_use"] = state["used"]
    _repo_cache.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def check_not_forked() -> None:
    if state["forked_after_use"]:
        raise RuntimeError("this process was forked after its parent used the store, and the store's I/O cannot "
                           "cross a fork: start worker processes with 'forkserver' or 'spawn' (DataLoader: "
                           "multiprocessing_context=storage.qa_dataset.loader_context(num_workers))")


def open_repository(location: StoreLocation, create: bool) -> icechunk.Repository:
    """The icechunk repository at `location`; refuses today's plain-Zarr folders with a way to convert them."""
    if location.is_local:
        path = location.local_path
        if path.exists():
            if is_plain_zarr(path):
                raise plain_store_error(path)
            if path.is_file() or (any(path.iterdir()) and not (path / "refs").exists()):
                raise UserError(f"store.path {path} exists and is not a store: choose an empty or new folder")
    check_not_forked()
    state["used"] = True
    key = (location.url, location.endpoint_url, location.region)
    with _repo_cache_lock:
        repo = _repo_cache.pop(key, None)
        # A local folder may have been deleted (and recreated) since: trust the cache only while it stands.
        if repo is not None and (not location.is_local or (location.local_path / "refs").is_dir()):
            _repo_cache[key] = repo
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


def store_exists(where: StoreLocation | Path | str, endpoint_url: str | None = None, region: str | None = None) -> bool:
    location = StoreLocation.of(where, endpoint_url=endpoint_url, region=region)
    if location.is_local:
        path = location.local_path
        if not path.exists():
            return False
        if is_plain_zarr(path):
            raise plain_store_error(path)
    return icechunk.Repository.exists(location.storage())
