"""What the store holds, for people (`msvqa store info`) and scripts (`--json`)."""

from __future__ import annotations

from typing import Any

from storage.store import open_store, store_exists


def store_report(store_cfg: Any) -> dict:
    """Every group of the store a `StoreConfig` names, at its snapshot (an id or a tag; the branch tip when unset)."""
    if not store_exists(store_cfg.path, store_cfg.endpoint_url, store_cfg.region):
        raise FileNotFoundError(f"store.path {store_cfg.path} does not exist yet: run a stage first")
    store = open_store(store_cfg, mode="r")
    location = store.location
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
