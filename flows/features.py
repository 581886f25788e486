"""Features flow: run the stored clips through both backbones into the feature store, resumable.

The feature group follows its clip group's rows: it grows when the clip group grew, and the clip flow
marks its rows incomplete when their clips change. Only this driver writes completion flags.
"""

from __future__ import annotations

import numpy as np
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff

from configs.errors import UserError
from configs.schema import PipelineConfig
from flows.clips import artifact_key, flow_run_id
from flows.naming import flow_run_name
from flows.retries import retry_unless_user_error
from flows.runtime import task_runner
from storage.store import GroupRef, SpecGroup, open_group, open_store
from tasks.video.clips import clip_spec
from tasks.device import resolve_device
from tasks.features.extract import (backbone_out_dims, clear_backbone_cache, extract_feature_batch, feature_spec,
                                    load_backbone, prepare_feature_group)


# Retries cover infrastructure failures; rewriting a row is harmless because each row is its own chunk.
@task(name="extract-features", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(2),
      retry_jitter_factor=0.5, retry_condition_fn=retry_unless_user_error)
def extract_features_task(clip_ref: GroupRef, feature_ref: GroupRef, rows: list[int], config: PipelineConfig) -> dict:
    """Rows go to the fork `feature_ref` carries, handed back with the rows for the driver's commit."""
    result = extract_feature_batch(clip_ref, feature_ref, rows, config.features)
    get_run_logger().info("extracted features of %d videos", len(result["rows"]))
    return result


def clip_group_for(config: PipelineConfig) -> SpecGroup:
    store = open_store(config.store)
    group = store.peek(config.dataset.name, "clips", clip_spec(config.clips))
    if group is None or "video_ids" not in group.attrs:
        raise UserError(f"store {config.store.path} has no clips for this clip spec yet: run `msvqa clips` first")
    return group


def feature_group_for(config: PipelineConfig, clips: SpecGroup) -> SpecGroup:
    store = open_store(config.store)
    return store.spec_group(config.dataset.name, "features", feature_spec(config.features, clips.ref.spec_hash))


def warm_backbones(config: PipelineConfig) -> None:
    """Build both backbones once, here, before the local runner's threads need them.

    Those threads share this process's backbone cache; two of them missing it at once would seed and
    draw from torch's global generator at the same time, giving random-init backbones other weights.
    """
    device = resolve_device(config.features.device)
    for backbone in (config.features.appearance, config.features.motion):
        load_backbone(backbone.backbone, str(backbone.weights or ""), config.features.seed, device)


def features_flow_body(config: PipelineConfig) -> dict:
    logger = get_run_logger()
    clips = clip_group_for(config)
    features = feature_group_for(config, clips)
    store, run_id = open_store(config.store), flow_run_id()
    # Workers read the clips at the snapshot this driver plans from, whatever is committed meanwhile.
    clip_ref = store.read_ref(clips.ref)
    clips = open_group(clip_ref, mode="r")
    video_ids = clips.attrs["video_ids"]
    random_init = [name for name, bb in (("appearance", config.features.appearance), ("motion", config.features.motion))
                   if bb.weights is None]

    def prepare(tx) -> None:
        group = tx.open(features.ref)
        if group.num_rows:
            group.grow(len(video_ids))  # the clip group gained videos since this group was made
        group.update_attrs(video_ids=video_ids, names=clips.attrs["names"], clips=clips.ref.path,
                           random_init=random_init)
        prepare_feature_group(group, len(video_ids), config.clips.num_clips, config.clips.frames_per_clip,
                              backbone_out_dims(config.features))

    store.transact(prepare, stage="features", message=f"prepare {features.ref.path}", flow_run=run_id,
                   counts={"videos": len(video_ids)})
    if random_init:
        # Loud on purpose: features from untrained backbones are only good for demos and tests.
        logger.warning("features: no weights configured for %s: backbones are RANDOMLY INITIALISED",
                       " and ".join(random_init))
    todo = np.flatnonzero(clips.completed() & ~features.completed()).tolist()
    size = config.features.videos_per_task
    batches = [todo[start:start + size] for start in range(0, len(todo), size)]
    logger.info("features %s: %d videos to extract in %d tasks", features.ref.path, len(todo), len(batches))
    written: list[int] = []
    if batches and config.runner.kind == "local":
        warm_backbones(config)
    if batches:
        progress = create_progress_artifact(0.0, key=artifact_key("features-progress", config.dataset.name),
                                            description=f"videos extracted into {features.ref.path}")
        forks = [store.fork(features.ref) for _ in batches]  # one per task: its worker writes its rows there
        futures = extract_features_task.map(unmapped(clip_ref), forks, batches, unmapped(config))
        for finished, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            rows = result["rows"]
            # One commit per batch (rows and completion): a killed run keeps what its finished batches wrote.
            store.transact(lambda tx, rows=rows: tx.open(features.ref).mark_complete(rows), stage="features",
                           message=f"extracted into {features.ref.path}", flow_run=run_id,
                           forks=[result["fork"]], counts={"extracted": len(rows)})
            written += rows
            update_progress_artifact(progress, 100.0 * finished / len(batches))
    summary = {
        "group": features.ref.path,
        "spec_hash": features.ref.spec_hash,
        "snapshot": store.snapshot_id,
        "complete": int(features.completed().sum()),
        "extracted_now": len(written),
        "random_init": random_init,
    }
    logger.info("features: %s", summary)
    return summary


def release_backbones(config: PipelineConfig) -> None:
    """Free the backbones this flow built (and their GPU memory): here, and on a long-lived cluster's workers.

    A cluster the runner made itself goes away with the flow; one given by `runner.address` stays.
    """
    clear_backbone_cache()
    if config.runner.kind == "dask" and config.runner.address:
        from prefect.context import FlowRunContext

        FlowRunContext.get().task_runner.client.run(clear_backbone_cache)


@flow(name="features", flow_run_name=flow_run_name)
def features_flow(config: PipelineConfig) -> dict:
    """Extract appearance (per frame) and motion (per clip) features for every stored video."""
    try:
        return features_flow_body(config)
    finally:
        release_backbones(config)


def run_features(config: PipelineConfig) -> dict:
    return features_flow.with_options(task_runner=task_runner(config.runner))(config)
