"""What a finished run leaves in MLflow besides its metrics: the store snapshot it read (its lineage), a
self-contained inference bundle, and the registered model version with its alias."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from configs.schema import ModelConfig, PipelineConfig
from models.registry import model_entry
from tasks.serving.bundle import save_bundle
from tasks.tracking.mlflow_adapter import BASELINE_ALIAS, CHAMPION, Tracker
from tasks.train.data import QAData

BUNDLE_ARTIFACT = "bundle/bundle.pt"


def log_lineage(tracker: Tracker, run_id: str, config: PipelineConfig, data: QAData) -> None:
    """The store groups this run read, as an MLflow dataset input whose digest is the store snapshot id."""
    groups = {"text": data.text, "clips": data.clips, "features": data.features}
    rows = [{"kind": kind, "path": g.ref.path, "spec_hash": g.ref.spec_hash, "rows": None}
            for kind, g in groups.items() if g is not None]
    rows += [{"kind": f"split/{split}", "path": f"{data.text.ref.path}/{split}", "spec_hash": data.text.ref.spec_hash,
              "rows": len(dataset)} for split, dataset in data.splits.items()]
    tracker.log_input(run_id, pd.DataFrame(rows), name=f"{config.dataset.name}-store",
                      digest=data.snapshot, source=str(config.store.path))
    tracker.set_tags(run_id, {"store.snapshot": data.snapshot})


def log_bundle(tracker: Tracker, run_id: str, config: PipelineConfig, data: QAData, model,
                metrics: dict[str, float]) -> str:
    """A self-contained inference bundle as a run artifact (every model, MSVQA with its trained backbones)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_bundle(Path(tmp) / Path(BUNDLE_ARTIFACT).name, config=config, vocab=data.vocab, model=model,
                           spec_hashes=data.spec_hashes, metrics=metrics)
        tracker.log_artifact(run_id, Path(path), str(Path(BUNDLE_ARTIFACT).parent))
    tracker.set_tags(run_id, {"bundle_artifact": BUNDLE_ARTIFACT})
    return BUNDLE_ARTIFACT


def register(tracker: Tracker, run_id: str, config: PipelineConfig, model_cfg: ModelConfig, data: QAData, model,
              metrics: dict[str, float], bundle: str) -> dict[str, Any]:
    name = f"{config.dataset.name}-{model_cfg.name}"
    _, version = tracker.log_model(run_id, model, registered_name=name,
                                   metadata={"spec_hashes": data.spec_hashes, "val_acc": metrics["val_acc"]})
    if version is None:
        return {}
    tracker.set_model_version_tags(name, version, {"run_id": run_id, "bundle_artifact": bundle})
    # Only video models compete for `champion` (what `answer` and `search` use); the question-only floor keeps its own.
    alias = CHAMPION if model_entry(model_cfg.name).uses_video else BASELINE_ALIAS
    promoted = tracker.promote_if_best(name, version, metrics["val_acc"], alias)
    champion = promoted and alias == CHAMPION
    tracker.set_tags(run_id, {"registered_model": f"{name}/{version}", "champion": str(champion).lower(),
                              **({"alias": alias} if promoted else {})})
    return {"registered_model": name, "version": version, "champion": champion, "alias": alias if promoted else None}
