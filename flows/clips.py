"""Clips flow: decode every video once into the clip store, in parallel batches, resumable.

The clip group follows the dataset: new videos grow it (and the feature and target groups made from it)
along the video axis, a video whose file changed is marked incomplete and decoded again, a video that left
the mapping is quarantined as "removed from dataset". Only this driver writes completion flags and attributes.
"""

from __future__ import annotations

import re

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff

from configs.errors import UserError
from configs.schema import PipelineConfig
from flows.naming import flow_run_name
from flows.retries import retry_unless_user_error
from flows.runtime import task_runner
from storage.store import GroupRef, SpecGroup, Store, open_store
from tasks.ingest.changes import MISSING_FILE, REMOVED, IndexConflict, IndexPlan, fingerprint_videos, plan_index
from tasks.video.clips import ClipJob, clip_spec, decode_clip_batch, prepare_clip_group
from tasks.ingest.layout import VideoEntry, validate_layout


# Retries cover infrastructure failures (a lost worker, a store I/O error): a bad video is reported, not
# raised, and rewriting a row is harmless because each row is its own chunk.
@task(name="decode-videos", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(2),
      retry_jitter_factor=0.5, retry_condition_fn=retry_unless_user_error)
def decode_videos_task(ref: GroupRef, jobs: list[ClipJob], config: PipelineConfig) -> dict:
    """Rows go to the fork `ref` carries; the result hands it back with the outcomes for the driver's commit."""
    result = decode_clip_batch(ref, jobs, config.clips)
    get_run_logger().info("decoded %d of %d videos", sum(o["ok"] for o in result["outcomes"]), len(jobs))
    return result


def flow_run_id() -> str | None:
    """The Prefect flow run this code runs in (named in every commit it makes), None outside one."""
    from prefect.runtime import flow_run

    return flow_run.id


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from e.g. ("clips-progress", dataset name)."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def derived_groups(store: Store, dataset: str, clips: SpecGroup) -> list[SpecGroup]:
    """The groups made row by row from this clip group: features and the autoencoder's stored targets."""
    return [g for kind in ("features", "targets") for g in store.find(dataset, kind)
            if g.attrs.get("clips") == clips.ref.path]


def apply_index_plan(store: Store, group: SpecGroup, plan: IndexPlan, dataset: str) -> None:
    """Grow, invalidate and quarantine, then record the new index; the order keeps every crash point safe.

    Rows are marked incomplete before the new fingerprints are recorded, so a run killed in between
    still sees the change next time; growing is idempotent, so a kill before the attributes are
    written only grows again to the same size.
    """
    stale = plan.changed_rows + plan.removed_rows
    for derived in derived_groups(store, dataset, group):
        if derived.num_rows:
            derived.grow(len(plan.video_ids))
            derived.mark_incomplete(stale)  # their clips are about to change or go
            # Their index grows with their rows (a reader pairs `video_ids` with the rows, e.g. search).
            derived.update_attrs(video_ids=plan.video_ids, names=plan.names)
    if group.num_rows:
        group.grow(len(plan.video_ids))
        group.mark_incomplete(stale)
    group.release(plan.names[row] for row in plan.changed_rows)
    group.quarantine({plan.names[row]: REMOVED for row in plan.removed_rows})
    group.update_attrs(video_ids=plan.video_ids, names=plan.names, files=plan.files)


def open_clip_group(config: PipelineConfig, videos: list[VideoEntry]) -> tuple[SpecGroup, IndexPlan]:
    """The clip group for this config, brought up to date with the dataset's video index (one commit)."""
    store = open_store(config.store)
    group = store.spec_group(config.dataset.name, "clips", clip_spec(config.clips))
    plan = plan_for(group, videos)

    def update(tx) -> None:
        apply_index_plan(tx, tx.open(group.ref), plan, config.dataset.name)
        prepare_clip_group(tx.open(group.ref), config.clips, len(plan.video_ids))

    store.transact(update, stage="clips", message=f"index of {group.ref.path}", flow_run=flow_run_id(),
                   counts={"videos": len(plan.video_ids), "new": len(plan.new_rows),
                           "changed": len(plan.changed_rows), "removed": len(plan.removed_rows)})
    return store.open(group.ref), plan


def plan_for(group: SpecGroup | None, videos: list[VideoEntry]) -> IndexPlan:
    """The row plan of `videos` against a clip group's recorded index (none: every video is new)."""
    attrs = group.attrs if group is not None else {}
    if "files" in attrs or "video_ids" not in attrs:
        old_files = attrs.get("files", {})
    else:
        old_files = None  # a group from before fingerprints: trust its rows, record fingerprints now
    current = fingerprint_videos(videos, old_files)
    try:
        return plan_index(attrs.get("video_ids", []), attrs.get("names", []), old_files,
                          group.quarantined() if group is not None else {},
                          [(v.video_id, v.name) for v in videos], current)
    except IndexConflict as exc:
        path = group.ref.path if group is not None else "clips"
        raise UserError(f"clip group {path} was built for another video index: {exc}; the index may only "
                        "gain or lose videos, so set a new store.path to rebuild from scratch") from None


def _record(store: Store, ref: GroupRef, result: dict, flow_run: str | None) -> int:
    """Driver only: one commit per finished batch of its rows, frame counts, completion, quarantine, padding."""
    outcomes = result["outcomes"]
    ok = [o for o in outcomes if o["ok"]]

    def apply(tx) -> None:
        group = tx.open(ref)
        group.write_rows("num_frames", [o["row"] for o in ok], [o["num_frames"] for o in ok])
        group.mark_complete(o["row"] for o in ok)
        group.quarantine({o["name"]: o["reason"] for o in outcomes if not o["ok"]})
        group.record_padded(o["name"] for o in ok if o["padded"])

    store.transact(apply, stage="clips", message=f"decoded into {ref.path}", flow_run=flow_run,
                   forks=[result["fork"]], counts={"decoded": len(ok), "failed": len(outcomes) - len(ok)})
    return len(ok)


def clips_flow_body(config: PipelineConfig) -> dict:
    logger = get_run_logger()
    report = validate_layout(config.dataset.root, config.dataset.max_videos)
    videos = report.videos
    group, plan = open_clip_group(config, videos)
    row_of = {(vid, name): row for row, (vid, name) in enumerate(zip(plan.video_ids, plan.names))}
    done = group.completed()
    # A stored row stays usable when its file goes missing later; only rows never decoded are quarantined.
    group.quarantine({v.name: MISSING_FILE for v in videos
                      if v.path is None and not done[row_of[(v.video_id, v.name)]]})
    quarantined = group.quarantined()
    jobs = [ClipJob(row_of[(v.video_id, v.name)], v.video_id, v.name, str(v.path)) for v in videos
            if v.path is not None and not done[row_of[(v.video_id, v.name)]] and v.name not in quarantined]
    size = config.clips.videos_per_task
    batches = [jobs[start:start + size] for start in range(0, len(jobs), size)]
    logger.info("clips %s: %d videos to decode in %d tasks (%d already complete; %d new, %d changed, %d removed)",
                group.ref.path, len(jobs), len(batches), int(done.sum()), len(plan.new_rows),
                len(plan.changed_rows), len(plan.removed_rows))
    decoded = 0
    if batches:
        progress = create_progress_artifact(0.0, key=artifact_key("clips-progress", config.dataset.name),
                                            description=f"videos decoded into {group.ref.path}")
        store, run_id = open_store(config.store), flow_run_id()
        # One forked session per task: its worker writes rows there; the driver commits each batch.
        futures = decode_videos_task.map([store.fork(group.ref) for _ in batches], batches, unmapped(config))
        for finished, future in enumerate(as_completed(futures), start=1):
            # Committed per batch, so a run killed half-way keeps what its finished batches wrote.
            decoded += _record(store, group.ref, future.result(), run_id)
            update_progress_artifact(progress, 100.0 * finished / len(batches))
    quarantine = group.quarantined()
    create_table_artifact([{"video": name, "reason": reason} for name, reason in sorted(quarantine.items())],
                          key=artifact_key("clips-quarantine", config.dataset.name),
                          description=f"videos of {group.ref.path} that could not be used, and why")
    summary = {
        "group": group.ref.path,
        "spec_hash": group.ref.spec_hash,
        "snapshot": open_store(config.store).snapshot_id,
        "videos": len(videos),
        "complete": int(group.completed().sum()),
        "decoded_now": decoded,
        "quarantined": len(quarantine),
        "padded": len(group.padded()),
        "new": len(plan.new_rows),
        "changed": len(plan.changed_rows),
        "removed": len(plan.removed_rows),
    }
    logger.info("clips: %s", summary)
    return summary


@flow(name="clips", flow_run_name=flow_run_name)
def clips_flow(config: PipelineConfig) -> dict:
    """Decode, sample and resize every video of the dataset into the clip store."""
    return clips_flow_body(config)


def run_clips(config: PipelineConfig) -> dict:
    return clips_flow.with_options(task_runner=task_runner(config.runner))(config)
