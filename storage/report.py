"""What the store holds, for people (`msvqa store info`) and scripts (`--json`)."""

from __future__ import annotations

from pathlib import Path

from storage.store import Store


def store_report(path: Path) -> dict:
    if not Path(path).exists():
        raise FileNotFoundError(f"store.path {path} does not exist yet: run a stage first")
    store = Store(path, mode="r")
    groups = []
    for dataset in store.datasets():
        for kind in store.kinds(dataset):
            for group in store.find(dataset, kind):
                entry = {
                    "dataset": dataset,
                    "kind": kind,
                    "path": group.ref.path,
                    "spec_hash": group.ref.spec_hash,
                    "spec": group.spec,
                    "arrays": group.array_info() if kind != "text" else [],
                    "bytes_stored": sum(a["bytes_stored"] for a in group.array_info()),
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
    return {"store": str(path), "groups": groups}
