"""What names a group and reopens it anywhere: spec hashes, group references, shared constants."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from storage.location import StoreLocation

COMPLETE = "complete"  # uint8 [N], one chunk per row: 1 once the driver committed the row's data
BLOB = "msvqa_blob"  # array attribute marking a uint8 array that holds one file's bytes (e.g. vocab.json)
T = TypeVar("T")


def codec_name(codec: Any) -> str:
    level = getattr(codec, "level", None)
    name = type(codec).__name__.removesuffix("Codec").lower()
    return name if level is None else f"{name} level {level}"


def spec_hash(spec: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able spec (key order does not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def jsonable(value: Any) -> Any:
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

