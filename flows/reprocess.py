"""Reprocess flow: rescan the data root and process only what changed since the store last saw it.

New, changed and removed videos go through the clips and features flows (which skip complete rows);
new or changed annotation files build a new text group (text groups are keyed by their checksums).
A run that finds nothing to do decodes, extracts and trains nothing and logs "no changes".

Caching, task by task (the store is the source of truth; a Prefect cache may only save work that the
store would confirm):
- ensure-dataset is never cached: it is what notices that sources or the folder changed.
- validate-layout is keyed by its inputs, its source and a stat fingerprint of the folder (names,
  sizes, mtimes of the mapping, annotations and videos): any change to the folder is a new key.
- build-text (flows/text.py) is keyed by the text spec and only while the store holds that text group.
Both caches expire, so stale records do not pile up in PREFECT_HOME.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.tasks import exponential_backoff

from configs.errors import UserError
from configs.schema import PipelineConfig
from flows.clips import artifact_key, plan_for, run_clips
from flows.features import run_features
from flows.ingest import ensure_dataset_task
from flows.naming import flow_run_name
from flows.retries import retry_unless_user_error
from flows.text import CACHE_EXPIRATION, build_text_task
from storage.store import Store, open_store
from tasks.ingest.changes import ChangeSet, IndexPlan, change_set, file_changes, fingerprint_file, \
    should_retrain
from tasks.video.clips import clip_spec
from tasks.features.extract import feature_spec
from tasks.ingest.layout import LayoutReport, find_video_files, validate_layout
from tasks.text.store import annotation_paths, text_spec

RECORD = "reprocess"  # dataset attribute: what the last reprocess run saw


def folder_fingerprint(root: Path) -> str:
    """Cheap (stat only) digest of everything validate_layout reads."""
    root = Path(root)
    files = [root / "youtube_mapping.txt", *annotation_paths(root).values(), *find_video_files(root / "video").values()]
    digest = hashlib.sha256()
    for path in files:
        info = path.stat() if path.is_file() else None
        digest.update(f"{path.relative_to(root)}:{info and info.st_size}:{info and info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@task(name="validate-layout", cache_policy=INPUTS + TASK_SOURCE, cache_expiration=CACHE_EXPIRATION)
def validate_layout_task(root: Path, max_videos: int | None, store_path: Path, fingerprint: str) -> LayoutReport:
    """`store_path` and `fingerprint` only key the cache: another store or a changed folder is a new key."""
    return validate_layout(root, max_videos)


@task(name="scan-videos", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(1),
      retry_condition_fn=retry_unless_user_error)
def scan_videos_task(config: PipelineConfig, layout: LayoutReport) -> IndexPlan:
    """Fingerprint the video files (hashing only those whose size or mtime changed) and plan the rows."""
    store = open_store(config.store)
    return plan_for(store.peek(config.dataset.name, "clips", clip_spec(config.clips)), layout.videos)


def annotation_checksums(root: Path) -> dict[str, str]:
    return {path.name: fingerprint_file(path)["sha256"] for path in annotation_paths(root).values()}


def pending_rows(store: Store, config: PipelineConfig) -> int:
    """Rows an interrupted earlier run left undone: clips to decode, or decoded clips without features."""
    clips = store.peek(config.dataset.name, "clips", clip_spec(config.clips))
    if clips is None or not clips.num_rows:
        return 0
    names = clips.attrs.get("names", [])
    done = clips.completed()
    quarantined = clips.quarantined()
    undecoded = sum(1 for row, name in enumerate(names) if not done[row] and name not in quarantined)
    features = store.peek(config.dataset.name, "features", feature_spec(config.features, clips.ref.spec_hash))
    extracted = features.completed(len(done)) if features is not None else np.zeros_like(done)
    return undecoded + int((done & ~extracted).sum())


def _publish(changes: ChangeSet, config: PipelineConfig) -> None:
    create_table_artifact(changes.table(), key=artifact_key("reprocess-changes", config.dataset.name),
                          description=f"what changed in {config.dataset.root}: " +
                          ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in changes.counts().items()))


@flow(name="reprocess", flow_run_name=flow_run_name)
def reprocess_flow(config: PipelineConfig) -> dict:
    """Rescan the dataset; decode, extract and encode only what is new or changed; optionally retrain."""
    logger = get_run_logger()
    root = Path(config.dataset.root)
    action = ensure_dataset_task(config)
    layout = validate_layout_task(root, config.dataset.max_videos, config.store.path, folder_fingerprint(root))
    if not layout.ok:
        raise UserError(f"dataset.root {root}: {layout.summary()}")
    plan = scan_videos_task(config, layout)
    store = open_store(config.store)
    annotations = annotation_checksums(root)
    recorded = store.dataset_attrs(config.dataset.name).get(RECORD, {}).get("annotations")
    changes = change_set(plan, file_changes(recorded, annotations))
    _publish(changes, config)
    pending = pending_rows(store, config)
    result: dict[str, Any] = {"action": action, **changes.counts(), "pending": pending, "decoded_now": 0,
                              "extracted_now": 0, "text_built": False, "retrained": False}
    if changes.empty and not pending:
        logger.info("reprocess %s: no changes", root)
        return result | {"status": "no changes"}
    logger.info("reprocess %s: %s, %d rows pending", root, changes.counts(), pending)
    if changes.videos_changed or pending:
        clips, features = run_clips(config), run_features(config)
        result.update(decoded_now=clips["decoded_now"], extracted_now=features["extracted_now"],
                      clips=clips, features=features)
    if changes.annotations:
        text = build_text_task(config.text, root, config.store, config.dataset.name, config.seed,
                               text_spec(config.text, root))
        store.update_dataset_attrs(config.dataset.name, **{RECORD: {"annotations": annotations}})
        result.update(text_built=text["built_now"], text=text)
    settings = config.reprocess
    if should_retrain(changes, settings.retrain_min_new_videos):
        from flows.train import train_flow  # imported here: training pulls in MLflow

        logger.info("reprocess: %d new or changed videos >= %d: retraining", len(changes.new_videos) +
                    len(changes.changed_videos), settings.retrain_min_new_videos)
        result.update(retrained=True, train=train_flow(config))
    return result | {"status": "processed"}


def run_reprocess(config: PipelineConfig) -> dict:
    """The reprocess flow; clips and features inside it use the configured task runner (Dask or threads)."""
    return reprocess_flow(config)
