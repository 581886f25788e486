"""Plain Zarr folders: the layout before versioning (refused, with a way to convert) and the benchmarks' baseline."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from configs.errors import UserError

_WRITE_SLICE = 1 << 20  # bytes per write() call when storing a chunk in a plain Zarr folder


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


def is_plain_zarr(path: Path) -> bool:
    """A folder in the layout of the stores before versioning (a Zarr v3 hierarchy, no icechunk refs)."""
    return (path / "zarr.json").is_file() and not (path / "refs").exists()


def plain_store_error(path: Path) -> UserError:
    return UserError(f"store.path {path} is a plain Zarr store from before versioning: convert it with "
                     f"`msvqa store import {path} NEW` and point store.path at NEW, or set a new store.path "
                     "and rerun the stages")
