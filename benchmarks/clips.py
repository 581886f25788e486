"""Throughput of the clip stage against bare ffmpeg decoding and an HCRN-style reader, on MSVD-like videos.

Prints one JSON object. Generates --videos videos (320x240, --seconds at --fps, mpeg4 in .avi, a moving
texture with noise so they do not compress to nothing) in a temporary folder, then times three jobs
with --workers processes each (pools started and warmed before the clock starts):

  clips       tasks.video.clips.process_clip_jobs with the default config: plan from the AVI header, decode
              the sampled frames at 224 and 112 px (bicubic), write both arrays into a Zarr clip group
              (8 clips x 16 frames, hcrn sampling)
  clips_area  the same with `clips.scaler: area`
  clips_uncompressed
              the same with `clips.compression_level: null` (chunks stored raw)
  ffmpeg_null `ffmpeg -i VIDEO -f null -`: one plain decode of every frame, nothing kept
  hcrn        decode every frame into memory with PyAV, then resize the sampled frames with PIL
              bicubic to 224 and 112 (how HCRN's preprocessing reads videos; nothing is written)

A further clip pass (default config) times planning, decoding and writing apart (clips_seconds_per_video)
and counts the CPU time of its ffmpeg processes and of its workers against a bare decode's
(cpu_ms_per_video; clips_worker_uncompressed from one more pass with raw chunks), to show where the
clip stage spends its time. cpu_ms_per_video.ffmpeg_start is what starting the ffmpeg binary costs
before it reads a file, a part of every per-video process (bare decoding included).
goal_cpu_budget_ms_per_video is the most CPU per video the clip stage could spend and still meet each
goal if the workers kept every core busy: workers x 1000 / (goal rate in videos/s).

Clip-stage tasks hold --videos-per-task videos (default 1, the baselines' granularity too): with 40
videos, batches of 4 left one worker idle for up to a batch at the end, a tail a real run of thousands
of videos does not have (measured: ~10% of the figure).

peak_rss_mb is the largest ru_maxrss of a clip-stage worker process; the ffmpeg processes it starts are
not part of it (hcrn_peak_rss_mb is the same figure for the HCRN-style reader, which decodes in-process).

    python benchmarks/clips.py --videos 40
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from common import cpu_name, positive_int  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from configs.schema import ClipsConfig  # noqa: E402
from storage.store import GroupRef, Store, open_group  # noqa: E402
from tasks.video.avi_header import avi_frame_count  # noqa: E402
from tasks.video.clips import APPEARANCE, MOTION, ClipJob, clip_spec, prepare_clip_group, process_clip_jobs  # noqa: E402
from tasks.video.ffmpeg_bin import ffmpeg_binary  # noqa: E402
from tasks.video.sampling import sample_frame_indices  # noqa: E402
from tasks.video.decode import decode_clips  # noqa: E402

WIDTH, HEIGHT = 320, 240
CLIPS = ClipsConfig(num_clips=8, frames_per_clip=16, sampling="hcrn", appearance_size=224, motion_size=112)
CLIPS_AREA = CLIPS.model_copy(update={"scaler": "area"})
CLIPS_RAW = CLIPS.model_copy(update={"compression_level": None})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=positive_int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=positive_int, default=30)
    parser.add_argument("--workers", type=positive_int, default=2)
    parser.add_argument("--videos-per-task", type=positive_int, default=1, help="clip-stage videos per task")
    return parser.parse_args(argv)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_video(path: Path, seed: int, frames: int, fps: int) -> int:
    """Encode one MSVD-like video: a drifting two-scale texture plus per-frame noise; returns its bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:2 * HEIGHT, 0:2 * WIDTH].astype(np.float32)
    fx, fy = rng.uniform(0.02, 0.08, size=2)
    texture = np.stack([
        127 + 60 * np.sin(fx * x + phase) + 40 * np.cos(fy * y - phase) for phase in rng.uniform(0, 6.3, 3)
    ], axis=-1)  # [2H, 2W, 3]
    dx, dy = rng.uniform(0.5, 2.5, size=2)  # pixels per frame
    video = np.empty((frames, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(frames):
        top, left = int(t * dy) % HEIGHT, int(t * dx) % WIDTH
        noise = rng.normal(0, 3, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
        video[t] = np.clip(texture[top:top + HEIGHT, left:left + WIDTH] + noise, 0, 255)
    args = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(fps), "-i", "-",
            "-c:v", "mpeg4", "-q:v", "5", "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    subprocess.run(args, input=video.tobytes(), check=True, capture_output=True)
    return path.stat().st_size


def _warm() -> None:
    """Pool initializer: import what the jobs use, so the timed part is the work, not interpreter start-up."""
    import av  # noqa: F401
    import PIL.Image  # noqa: F401

    import storage.store  # noqa: F401  (and zarr through it)


def clip_task(ref: GroupRef, jobs: list[ClipJob], cfg: ClipsConfig) -> tuple[list[dict], float]:
    return process_clip_jobs(ref, jobs, cfg), _max_rss_mb()


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def clip_parts_task(ref: GroupRef, jobs: list[ClipJob], cfg: ClipsConfig) -> list[float]:
    """The clip stage's steps for each job, timed apart: seconds spent [planning, decoding, writing], then
    the CPU seconds of the ffmpeg processes and of this worker (all its threads)."""
    group = open_group(ref)
    spent = [0.0, 0.0, 0.0]
    ffmpeg_cpu, own_cpu = _cpu_s(resource.RUSAGE_CHILDREN), _cpu_s(resource.RUSAGE_SELF)
    for job in jobs:
        start = time.perf_counter()
        num_frames = avi_frame_count(Path(job.path))  # the benchmark's videos are AVI files
        probed = time.perf_counter()
        indices = sample_frame_indices(num_frames, cfg.num_clips, cfg.frames_per_clip, cfg.sampling)
        decoded = decode_clips(Path(job.path), indices, cfg.appearance_size, cfg.motion_size,
                               timeout_s=cfg.timeout_s, threads=cfg.ffmpeg_threads, scaler=cfg.scaler)
        done_decoding = time.perf_counter()
        group.write(APPEARANCE, decoded.appearance, row=job.row)
        group.write(MOTION, decoded.motion, row=job.row)
        steps = (probed - start, done_decoding - probed, time.perf_counter() - done_decoding)
        spent = [a + b for a, b in zip(spent, steps)]
    return spent + [_cpu_s(resource.RUSAGE_CHILDREN) - ffmpeg_cpu, _cpu_s(resource.RUSAGE_SELF) - own_cpu]


def null_task(path: str) -> float:
    """Decode one video to nothing; returns the CPU seconds ffmpeg used."""
    before = _cpu_s(resource.RUSAGE_CHILDREN)
    args = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-f", "null", "-"]
    subprocess.run(args, check=True, capture_output=True)
    return _cpu_s(resource.RUSAGE_CHILDREN) - before


def ffmpeg_start_cpu_s(runs: int = 20) -> float:
    """CPU seconds one start of the ffmpeg binary costs on its own (loading and relocating it)."""
    before = _cpu_s(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run([ffmpeg_binary(), "-hide_banner", "-version"], check=True, capture_output=True)
    return (_cpu_s(resource.RUSAGE_CHILDREN) - before) / runs


def hcrn_task(path: str) -> float:
    """Decode all frames into memory, then resize the hcrn-sampled ones with PIL bicubic at both sizes."""
    import av
    from PIL import Image

    with av.open(path) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])  # [n, H, W, 3]
    indices = sample_frame_indices(len(frames), CLIPS.num_clips, CLIPS.frames_per_clip, CLIPS.sampling)
    size_a, size_m = CLIPS.appearance_size, CLIPS.motion_size
    appearance = np.empty((*indices.shape, size_a, size_a, 3), dtype=np.uint8)
    motion = np.empty((*indices.shape, size_m, size_m, 3), dtype=np.uint8)
    for (clip, slot), index in np.ndenumerate(indices):
        image = Image.fromarray(frames[index])
        appearance[clip, slot] = np.asarray(image.resize((size_a, size_a), Image.BICUBIC))
        motion[clip, slot] = np.asarray(image.resize((size_m, size_m), Image.BICUBIC))
    return _max_rss_mb()


def _pool(workers: int) -> ProcessPoolExecutor:
    # forkserver: workers fork from a small server process, so their ru_maxrss starts from its size, not
    # from this process's high-water mark (which exec and fork would both hand down).
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"), initializer=_warm)
    list(pool.map(time.sleep, [0.01] * workers * 2))  # start every worker before the clock does
    return pool


def _timed(workers: int, fn, items: list) -> tuple[float, list]:
    # Earlier passes' writes still in the page cache would be flushed during this one and slow it.
    os.sync()
    with _pool(workers) as pool:
        start = time.perf_counter()
        results = list(pool.map(fn, *zip(*items)))
        return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    frames = round(args.seconds * args.fps)
    work = Path(tempfile.mkdtemp(prefix="msvqa-bench-clips-"))
    try:
        paths = [work / f"video{i:04d}.avi" for i in range(args.videos)]
        with ProcessPoolExecutor(args.workers) as pool:
            sizes = list(pool.map(make_video, paths, range(args.videos), [frames] * args.videos,
                                  [args.fps] * args.videos))

        jobs = [ClipJob(row, row + 1, path.stem, str(path)) for row, path in enumerate(paths)]
        step = args.videos_per_task

        def clip_pass(name: str, cfg: ClipsConfig, task=clip_task) -> tuple[float, list, dict[str, dict]]:
            """Time one clip-stage pass into a fresh store, which is deleted afterwards: the data earlier
            passes left behind made later ones measurably slower (page cache), whatever their order."""
            folder = work / f"store-{name}.zarr"
            group = Store(folder).spec_group("bench", "clips", clip_spec(cfg))
            prepare_clip_group(group, cfg, args.videos)
            batches = [(group.ref, jobs[i:i + step], cfg) for i in range(0, len(jobs), step)]
            seconds, results = _timed(args.workers, task, batches)
            arrays = {info["name"]: info for info in group.array_info()}
            shutil.rmtree(folder)
            return seconds, results, arrays

        null_s, null_cpu = _timed(args.workers, null_task, [(str(p),) for p in paths])
        clips_s, clip_results, arrays = clip_pass("bicubic", CLIPS)
        area_s, area_results, _ = clip_pass("area", CLIPS_AREA)
        raw_s, raw_results, _ = clip_pass("raw", CLIPS_RAW)
        hcrn_s, hcrn_rss = _timed(args.workers, hcrn_task, [(str(p),) for p in paths])
        # A further clip pass, timed step by step, to see where the time goes.
        _, parts, _ = clip_pass("parts", CLIPS, clip_parts_task)
        _, raw_parts, _ = clip_pass("parts-raw", CLIPS_RAW, clip_parts_task)

        outcomes = [o for results in (clip_results, area_results, raw_results) for result in results for o in result[0]]
        failed = [o for o in outcomes if not o["ok"]]
        if failed or len(outcomes) != 3 * args.videos:
            raise RuntimeError(f"clip stage failed on {len(failed)} videos: {failed[:3]}")
        n = args.videos
        result = {
            "videos": n,
            "frames_per_video": frames,
            "video_bytes_mean": round(sum(sizes) / n),
            "workers": args.workers,
            "clips_videos_per_s": round(n / clips_s, 2),
            "ffmpeg_null_videos_per_s": round(n / null_s, 2),
            "hcrn_videos_per_s": round(n / hcrn_s, 2),
            "ratio_vs_ffmpeg": round(null_s / clips_s, 3),
            "speedup_vs_hcrn": round(hcrn_s / clips_s, 3),
            "clips_area_videos_per_s": round(n / area_s, 2),
            "area_ratio_vs_ffmpeg": round(null_s / area_s, 3),
            "area_speedup_vs_hcrn": round(hcrn_s / area_s, 3),
            "clips_uncompressed_videos_per_s": round(n / raw_s, 2),
            "uncompressed_ratio_vs_ffmpeg": round(null_s / raw_s, 3),
            "uncompressed_speedup_vs_hcrn": round(hcrn_s / raw_s, 3),
            "peak_rss_mb": round(max(r[1] for r in clip_results + area_results + raw_results), 1),
            "hcrn_peak_rss_mb": round(max(hcrn_rss), 1),
            # Seconds per video inside one worker (while the others work too), by step of the clip stage.
            "clips_seconds_per_video": {step: round(sum(p[i] for p in parts) / n, 3)
                                        for i, step in enumerate(("plan", "decode", "write"))},
            # CPU per video in that pass: the clip stage's ffmpeg and its worker, against a bare decode.
            "cpu_ms_per_video": {"clips_ffmpeg": round(sum(p[3] for p in parts) / n * 1000, 1),
                                 "clips_worker": round(sum(p[4] for p in parts) / n * 1000, 1),
                                 "clips_worker_uncompressed": round(sum(p[4] for p in raw_parts) / n * 1000, 1),
                                 "ffmpeg_null": round(sum(null_cpu) / n * 1000, 1),
                                 "ffmpeg_start": round(ffmpeg_start_cpu_s() * 1000, 1)},
            "goal_cpu_budget_ms_per_video": {
                "ratio_0.5": round(args.workers * 1000 / (0.5 * n / null_s), 1),
                "speedup_5x": round(args.workers * 1000 / (5 * n / hcrn_s), 1),
            },
            "bytes_per_video": {
                "appearance": round(arrays[APPEARANCE]["bytes_stored"] / n),
                "motion": round(arrays[MOTION]["bytes_stored"] / n),
                # One row of each stored uint8 array, uncompressed.
                "appearance_raw": int(np.prod(arrays[APPEARANCE]["shape"][1:])),
                "motion_raw": int(np.prod(arrays[MOTION]["shape"][1:])),
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["cpu"] = cpu_name()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
