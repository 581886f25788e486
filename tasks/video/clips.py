"""The clip stage's unit of work: decode a few videos and write each into its own row of the clip store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from configs.schema import ClipsConfig
from storage.store import GroupRef, SpecGroup, row_writer
from tasks.video.avi_header import avi_frame_count
from tasks.video.sampling import sample_frame_indices
from tasks.video.decode import DecodedClips, decode_clips
from tasks.video.ffmpeg_run import FramesMissing, VideoError
from tasks.video.probe import probe_video

# Bump when decoding changes what lands in the store: it is part of the clip spec, hence of the hash.
DECODER_VERSION = "ffmpeg-select-scale-v3"
APPEARANCE = "appearance"
MOTION = "motion"


@dataclass(frozen=True)
class ClipJob:
    row: int
    video_id: int
    name: str
    path: str


@dataclass(frozen=True)
class ClipOutcome:
    row: int
    name: str
    ok: bool
    reason: str = ""
    padded: bool = False
    num_frames: int = 0


def clip_spec(cfg: ClipsConfig) -> dict:
    """What determines the stored clips; its hash names the clip group."""
    return {
        "num_clips": cfg.num_clips,
        "frames_per_clip": cfg.frames_per_clip,
        "sampling": cfg.sampling,
        "appearance_size": cfg.appearance_size,
        "motion_size": cfg.motion_size,
        "scaler": cfg.scaler,
        "decoder": DECODER_VERSION,
    }


def clip_chunks(cfg: ClipsConfig, size: int, clips_per_chunk: int = 1) -> tuple[int, ...]:
    """The chunk shape of a clip array [videos, clips, frames, size, size, 3]: one row, `clips_per_chunk` clips."""
    return (1, clips_per_chunk, cfg.frames_per_clip, size, size, 3)


def prepare_clip_group(group: SpecGroup, cfg: ClipsConfig, num_videos: int, clips_per_chunk: int = 1) -> None:
    """Preallocate both arrays, one clip per chunk, so parallel writers (one video each) never share a chunk.

    A store made before clips were chunked by clip keeps its one-video chunks: both read the same.
    `clips_per_chunk` = `num_clips` makes that older layout (the store benchmark compares both).
    """
    c, f = cfg.num_clips, cfg.frames_per_clip
    a, m = cfg.appearance_size, cfg.motion_size
    for name, size in ((APPEARANCE, a), (MOTION, m)):
        # One clip, not one video, per chunk: a whole 224 px video (~16 MB compressed) went to Icechunk's
        # local storage in one write(), which on VMs with free page reporting costs ~10x the same bytes
        # in smaller pieces; per clip its ratio to plain Zarr went from a median 0.78 to 0.99 (docs/benchmarks.md).
        group.ensure_array(name, (num_videos, c, f, size, size, 3), "uint8",
                           chunks=clip_chunks(cfg, size, clips_per_chunk), compression_level=cfg.compression_level)
    # Bookkeeping, one chunk per row: written by the driver in the commit that brings the row's data.
    group.ensure_array("num_frames", (num_videos,), "int64", chunks=(1,), fill_value=0)
    group.ensure_array("complete", (num_videos,), "uint8", chunks=(1,), fill_value=0)


def decode_one(job: ClipJob, cfg: ClipsConfig) -> tuple[DecodedClips, bool]:
    """One video's clips, sampled from its exact frame count, and whether they were padded; raises VideoError.

    The plan comes from the frame count an AVI header declares, else from the container's packets (both
    cheap); the decoding pass reports the true count, and where they differ the video is planned and
    decoded again from the true one.
    """
    path = Path(job.path)
    planned = avi_frame_count(path) or probe_video(path, timeout_s=cfg.timeout_s).num_frames
    try:
        indices, decoded = _decode_planned(path, planned, cfg)
        actual = decoded.frames_decoded
    except FramesMissing as missing:
        # Fewer frames than packets, and the plan reached past the last frame.
        if missing.frames_decoded is None or missing.frames_decoded >= planned:
            raise
        actual = missing.frames_decoded
    if actual != planned:
        indices, decoded = _decode_planned(path, actual, cfg)
        if decoded.frames_decoded != actual:
            raise VideoError(path, "ffmpeg failed", f"the video decoded to {actual} frames once and to "
                                                    f"{decoded.frames_decoded} the next time.")
    # A clip that repeats a frame was padded: the video is shorter than the sampling needs.
    padded = any(len(np.unique(clip)) < len(clip) for clip in indices)
    return decoded, padded


def _decode_planned(path: Path, num_frames: int, cfg: ClipsConfig) -> tuple[np.ndarray, DecodedClips]:
    if num_frames < 1:
        raise VideoError(path, "too few frames", "the video stream decodes to no frame.")
    indices = sample_frame_indices(num_frames, cfg.num_clips, cfg.frames_per_clip, cfg.sampling)  # [c, f]
    decoded = decode_clips(path, indices, cfg.appearance_size, cfg.motion_size, timeout_s=cfg.timeout_s,
                           threads=cfg.ffmpeg_threads, scaler=cfg.scaler)
    return indices, decoded


def decode_clip_batch(ref: GroupRef, jobs: list[ClipJob], cfg: ClipsConfig) -> dict:
    """Decode and write each job's row; a bad video is reported, never written as zeros.

    Returns {"outcomes": [...], "fork": ...}: with a forked reference (`Store.fork`) the rows stay in the
    fork for the driver to commit with their completion; with a plain one they are committed here.
    """
    outcomes = []
    with row_writer(ref, stage="clips") as group:
        for job in jobs:
            try:
                decoded, padded = decode_one(job, cfg)
            except VideoError as exc:
                outcomes.append(ClipOutcome(job.row, job.name, ok=False, reason=exc.reason))
                continue
            group.write(APPEARANCE, decoded.appearance, row=job.row)
            group.write(MOTION, decoded.motion, row=job.row)
            outcomes.append(ClipOutcome(job.row, job.name, ok=True, padded=padded,
                                        num_frames=decoded.frames_decoded))
    return {"outcomes": [asdict(outcome) for outcome in outcomes], "fork": group.handoff()}


def process_clip_jobs(ref: GroupRef, jobs: list[ClipJob], cfg: ClipsConfig) -> list[dict]:
    """`decode_clip_batch` for a plain reference: the rows are committed (without completion) here."""
    return decode_clip_batch(ref, jobs, cfg)["outcomes"]
