"""Clips flow: decode every video once into the clip store, in parallel batches, resumable."""

from __future__ import annotations

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from configs.schema import PipelineConfig
from flows.runtime import task_runner
from storage.store import GroupRef, Store
from tasks.clips import ClipJob, clip_spec, prepare_clip_group, process_clip_jobs
from tasks.layout import validate_layout


@task(name="decode-videos", cache_policy=NO_CACHE, retries=1)
def decode_videos_task(ref: GroupRef, jobs: list[ClipJob], config: PipelineConfig) -> list[dict]:
    return process_clip_jobs(ref, jobs, config.clips)


def open_clip_group(config: PipelineConfig, video_ids: list[int], names: list[str]):
    store = Store(config.store.path)
    group = store.spec_group(config.dataset.name, "clips", clip_spec(config.clips))
    known = group.attrs.get("video_ids")
    if known is not None and known != video_ids:
        raise ValueError(f"clip group {group.ref.path} was built for another video index; "
                         "remove it or use another store.path")
    group.update_attrs(video_ids=video_ids, names=names)
    prepare_clip_group(group, config.clips, len(video_ids))
    return group


def clips_flow_body(config: PipelineConfig) -> dict:
    logger = get_run_logger()
    report = validate_layout(config.dataset.root, config.dataset.max_videos)
    videos = report.videos
    group = open_clip_group(config, [v.video_id for v in videos], [v.name for v in videos])
    done = group.completed()
    group.quarantine({v.name: "missing file" for v in videos if v.path is None})
    quarantined = group.quarantined()
    jobs = [ClipJob(row, v.video_id, v.name, str(v.path)) for row, v in enumerate(videos)
            if v.path is not None and not done[row] and v.name not in quarantined]
    size = config.clips.videos_per_task
    batches = [jobs[start:start + size] for start in range(0, len(jobs), size)]
    logger.info("clips %s: %d videos to decode in %d tasks (%d already complete)",
                group.ref.path, len(jobs), len(batches), int(done.sum()))
    futures = decode_videos_task.map(unmapped(group.ref), batches, unmapped(config)) if batches else []
    outcomes = [outcome for future in futures for outcome in future.result()]
    # Only the driver records completion, after the workers returned with their rows written.
    ok = [o for o in outcomes if o["ok"]]
    group.mark_complete(o["row"] for o in ok)
    if ok:
        frames = group.read("num_frames")
        for o in ok:
            frames[o["row"]] = o["num_frames"]
        group.write("num_frames", frames)
    group.quarantine({o["name"]: o["reason"] for o in outcomes if not o["ok"]})
    group.record_padded(o["name"] for o in ok if o["padded"])
    summary = {
        "group": group.ref.path,
        "spec_hash": group.ref.spec_hash,
        "videos": len(videos),
        "complete": int(group.completed().sum()),
        "decoded_now": len(ok),
        "quarantined": len(group.quarantined()),
        "padded": len(group.padded()),
    }
    logger.info("clips: %s", summary)
    return summary


@flow(name="clips")
def clips_flow(config: PipelineConfig) -> dict:
    """Decode, sample and resize every video of the dataset into the clip store."""
    return clips_flow_body(config)


def run_clips(config: PipelineConfig) -> dict:
    return clips_flow.with_options(task_runner=task_runner(config.runner))(config)
