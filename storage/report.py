"""What the store holds, for people (`msvqa store info`) and scripts (`--json`)."""

from __future__ import annotations

from pathlib import Path

from storage.location import StoreLocation
from storage.store import Store, store_exists


def store_report(path: StoreLocation | Path | str, snapshot: str | None = None, endpoint_url: str | None = None,
                 region: str | None = None) -> dict:
    """Every group at one snapshot (`snapshot`: an id or a tag; the branch tip when None)."""
    location = StoreLocation.of(path, endpoint_url=endpoint_url, region=region)
    if not store_exists(location):
        raise FileNotFoundError(f"store.path {location.url} does not exist yet: run a stage first")
    store = Store(location, mode="r", snapshot=snapshot)
    groups = []
    for dataset in store.datasets():
        for kind in store.kinds(dataset):
            for group in store.find(dataset, kind):
                arrays = group.array_info()
                entry = {
                    "dataset": dataset,
                    "kind": kind,
                    "path": group.ref.path,
                    "spec_hash": group.ref.spec_hash,
                    "spec": group.spec,
                    "arrays": arrays if kind != "text" else [],
                    "bytes_stored": sum(a["bytes_stored"] for a in arrays),
                }
                if group.has_array("complete"):
                    entry["videos"] = int(group.shape("complete")[0])
                    entry["complete"] = int(group.completed().sum())
                    entry["quarantined"] = [{"video": v, "reason": r} for v, r in sorted(group.quarantined().items())]
                    entry["padded"] = group.padded()
                if kind == "text":
                    entry["complete"] = bool(group.attrs.get("complete"))
                    entry["questions"] = group.attrs.get("questions")
                groups.append(entry)
    tags = [name for name, snap in store.tags().items() if snap == store.snapshot_id]
    return {"store": location.url, "snapshot": store.snapshot_id, "tags": tags, "groups": groups}
