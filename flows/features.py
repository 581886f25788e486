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
from flows.clips import artifact_key
from flows.runtime import task_runner
from storage.store import GroupRef, SpecGroup, Store
from tasks.clips import clip_spec
from tasks.device import resolve_device
from tasks.features import backbone_out_dims, feature_spec, load_backbone, prepare_feature_group, process_feature_rows


# Retries cover infrastructure failures; rewriting a row is harmless because each row is its own chunk.
@task(name="extract-features", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(2),
      retry_jitter_factor=0.5)
def extract_features_task(clip_ref: GroupRef, feature_ref: GroupRef, rows: list[int], config: PipelineConfig) -> list[int]:
    written = process_feature_rows(clip_ref, feature_ref, rows, config.features)
    get_run_logger().info("extracted features of %d videos", len(written))
    return written


def clip_group_for(config: PipelineConfig) -> SpecGroup:
    store = Store(config.store.path)
    group = store.peek(config.dataset.name, "clips", clip_spec(config.clips))
    if group is None or "video_ids" not in group.attrs:
        raise UserError(f"store {config.store.path} has no clips for this clip spec yet: run `msvqa clips` first")
    return group


def feature_group_for(config: PipelineConfig, clips: SpecGroup) -> SpecGroup:
    store = Store(config.store.path)
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
    video_ids = clips.attrs["video_ids"]
    if features.num_rows:
        features.grow(len(video_ids))  # the clip group gained videos since this group was made
    features.update_attrs(video_ids=video_ids, names=clips.attrs["names"], clips=clips.ref.path)
    prepare_feature_group(features, len(video_ids), config.clips.num_clips, config.clips.frames_per_clip,
                          backbone_out_dims(config.features))
    random_init = [name for name, bb in (("appearance", config.features.appearance), ("motion", config.features.motion))
                   if bb.weights is None]
    if random_init:
        # Loud on purpose: features from untrained backbones are only good for demos and tests.
        logger.warning("features: no weights configured for %s: backbones are RANDOMLY INITIALISED",
                       " and ".join(random_init))
    features.update_attrs(random_init=random_init)
    todo = np.flatnonzero(clips.completed() & ~features.completed()).tolist()
    size = config.clips.videos_per_task
    batches = [todo[start:start + size] for start in range(0, len(todo), size)]
    logger.info("features %s: %d videos to extract in %d tasks", features.ref.path, len(todo), len(batches))
    written: list[int] = []
    if batches and config.runner.kind == "local":
        warm_backbones(config)
    if batches:
        progress = create_progress_artifact(0.0, key=artifact_key("features-progress", config.dataset.name),
                                            description=f"videos extracted into {features.ref.path}")
        futures = extract_features_task.map(unmapped(clips.ref), unmapped(features.ref), batches, unmapped(config))
        for finished, future in enumerate(as_completed(futures), start=1):
            rows = future.result()
            features.mark_complete(rows)  # per batch: a killed run keeps what its finished batches wrote
            written += rows
            update_progress_artifact(progress, 100.0 * finished / len(batches))
    summary = {
        "group": features.ref.path,
        "spec_hash": features.ref.spec_hash,
        "complete": int(features.completed().sum()),
        "extracted_now": len(written),
        "random_init": random_init,
    }
    logger.info("features: %s", summary)
    return summary


@flow(name="features")
def features_flow(config: PipelineConfig) -> dict:
    """Extract appearance (per frame) and motion (per clip) features for every stored video."""
    return features_flow_body(config)


def run_features(config: PipelineConfig) -> dict:
    return features_flow.with_options(task_runner=task_runner(config.runner))(config)
