"""The clip stage on the transactional store beside plain Zarr, the cost of a commit, and the rate on loopback S3.

Prints one JSON object. Generates --videos videos as benchmarks/clips.py does, then, with --workers
processes (forkserver, warmed before the clock starts) and --videos-per-task videos per task:

  plain          each worker decodes its videos and writes the rows into a plain Zarr folder
                 (storage.plain.SlicedWriteStore: each chunk file written in 1 MiB slices, as the store
                 before Icechunk did); no completion record, no commit: the floor
  zarr_local     the same with Zarr's stock LocalStore (one write() per chunk file, as Icechunk's local
                 storage writes): on machines where one large write() costs more than the same bytes in
                 slices (dev-2c, a VM with free page reporting: writes of 2 MiB or more), this separates
                 that effect from the transactions' own cost
  transactional  what `msvqa clips` does: the driver forks the group for each task, the workers write
                 into their forks, the driver merges each finished batch and commits it with its
                 completion flags and frame counts (the commit lock held), one commit per batch
  s3             the same transactional pass with the store on moto's S3 server on 127.0.0.1

commit_ms is the driver's time per batch commit (merge + completion + commit) in the transactional pass;
empty_commit_ms is one commit that marks a single row complete, with nothing else to write (the fixed
cost), local and on S3. The goal: transactional within 10% of plain (ratio_vs_plain >= 0.91).
Every pass stores the clip arrays with --clips-per-chunk clips per chunk (1, as `msvqa clips` does).

    python benchmarks/store_commits.py --videos 16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from clips import CLIPS, _pool, make_video  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from common import cpu_name, positive_int  # noqa: E402

from configs.schema import ClipsConfig  # noqa: E402
from storage.store import SlicedWriteStore, Store  # noqa: E402
from tasks.video.clips import APPEARANCE, MOTION, ClipJob, clip_spec, decode_clip_batch, decode_one  # noqa: E402
from tasks.video.clips import clip_chunks, prepare_clip_group  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=positive_int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=positive_int, default=30)
    parser.add_argument("--workers", type=positive_int, default=2)
    parser.add_argument("--videos-per-task", type=positive_int, default=4)
    parser.add_argument("--commits", type=positive_int, default=20, help="empty commits timed, per location")
    parser.add_argument("--repeats", type=positive_int, default=2, help="plain and local passes, alternated; best kept")
    parser.add_argument("--clips-per-chunk", type=positive_int, default=1,
                        help="the clip arrays' chunking in every pass: 1 as `msvqa clips` stores them, 8 (a whole "
                             "video) as it did before the eighth session")
    return parser.parse_args(argv)


def _plain_store(folder: str, sliced: bool):
    from zarr.storage import LocalStore  # only in this baseline: the project's code reaches Zarr through storage/

    return SlicedWriteStore(folder) if sliced else LocalStore(folder)


def plain_task(folder: str, jobs: list[ClipJob], cfg: ClipsConfig, sliced: bool = True) -> int:
    """Decode and write rows into a plain Zarr group (the arrays were created by the driver)."""
    import zarr  # only in this baseline: the project's code reaches Zarr through storage/

    group = zarr.open_group(store=_plain_store(folder, sliced), mode="a")
    for job in jobs:
        decoded, _ = decode_one(job, cfg)
        group[APPEARANCE].with_config({"write_empty_chunks": True})[job.row] = decoded.appearance
        group[MOTION].with_config({"write_empty_chunks": True})[job.row] = decoded.motion
    return len(jobs)


def plain_pass(folder: Path, jobs: list[ClipJob], cfg: ClipsConfig, workers: int, step: int,
               sliced: bool = True, clips_per_chunk: int = 1) -> float:
    import zarr
    from zarr.codecs import ZstdCodec

    root = zarr.open_group(store=_plain_store(str(folder), sliced), mode="w")
    c, f, n = cfg.num_clips, cfg.frames_per_clip, len(jobs)
    for name, size in ((APPEARANCE, cfg.appearance_size), (MOTION, cfg.motion_size)):
        root.create_array(name, shape=(n, c, f, size, size, 3), chunks=clip_chunks(cfg, size, clips_per_chunk),
                          dtype="uint8",
                          compressors=None if cfg.compression_level is None else ZstdCodec(level=cfg.compression_level))
    batches = [jobs[i:i + step] for i in range(0, n, step)]
    os.sync()
    with _pool(workers) as pool:
        start = time.perf_counter()
        list(pool.map(plain_task, [str(folder)] * len(batches), batches, [cfg] * len(batches),
                      [sliced] * len(batches)))
        return time.perf_counter() - start


def transactional_pass(store: Store, jobs: list[ClipJob], cfg: ClipsConfig, workers: int,
                       step: int, clips_per_chunk: int = 1) -> tuple[float, list[float]]:
    group = store.spec_group("bench", "clips", clip_spec(cfg))
    prepare_clip_group(group, cfg, len(jobs), clips_per_chunk)
    ref = group.ref
    batches = [jobs[i:i + step] for i in range(0, len(jobs), step)]
    commit_s = []
    os.sync()
    with _pool(workers) as pool:
        start = time.perf_counter()
        futures = [pool.submit(decode_clip_batch, store.fork(ref), batch, cfg) for batch in batches]
        for future in as_completed(futures):
            result = future.result()
            ok = [o for o in result["outcomes"] if o["ok"]]
            began = time.perf_counter()

            def apply(tx, ok=ok) -> None:
                g = tx.open(ref.path)
                g.write_rows("num_frames", [o["row"] for o in ok], [o["num_frames"] for o in ok])
                g.mark_complete(o["row"] for o in ok)
            store.transact(apply, stage="clips", message="bench batch", forks=[result["fork"]],
                           counts={"decoded": len(ok)})
            commit_s.append(time.perf_counter() - began)
        seconds = time.perf_counter() - start
    if int(store.at().open(ref.path).completed().sum()) != len(jobs):
        raise RuntimeError("the transactional pass did not complete every row")
    return seconds, commit_s


def empty_commits_ms(store: Store, commits: int) -> float:
    group = store.spec_group("bench", "flags", {"commits": commits})
    group.ensure_array("complete", (commits,), "uint8")
    start = time.perf_counter()
    for row in range(commits):
        store.transact(lambda tx, row=row: tx.open(group.ref.path).mark_complete([row]), stage="bench")
    return (time.perf_counter() - start) / commits * 1000


def s3_server():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    frames = round(args.seconds * args.fps)
    work = Path(tempfile.mkdtemp(prefix="msvqa-bench-store-"))
    server, endpoint = s3_server()
    try:
        paths = [work / f"video{i:04d}.avi" for i in range(args.videos)]
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(make_video, paths, range(args.videos), [frames] * args.videos, [args.fps] * args.videos))
        jobs = [ClipJob(row, row + 1, path.stem, str(path)) for row, path in enumerate(paths)]
        step, n, per_chunk = args.videos_per_task, args.videos, min(args.clips_per_chunk, CLIPS.num_clips)
        # Alternated and repeated, best kept: the first pass after generating the videos ran at half speed
        # (cold caches), whichever kind it was, and the machine is shared.
        plain_runs, local_runs, tx_runs = [], [], []
        for repeat in range(args.repeats):
            plain_runs.append(plain_pass(work / f"plain{repeat}.zarr", jobs, CLIPS, args.workers, step,
                                         clips_per_chunk=per_chunk))
            local_runs.append(plain_pass(work / f"local{repeat}.zarr", jobs, CLIPS, args.workers, step, sliced=False,
                                         clips_per_chunk=per_chunk))
            tx_runs.append(transactional_pass(Store(work / f"store{repeat}"), jobs, CLIPS, args.workers, step,
                                              per_chunk))
        plain_s, local_s = min(plain_runs), min(local_runs)
        tx_s, commit_s = min(tx_runs)
        local_commit_ms = empty_commits_ms(Store(work / "store0"), args.commits)

        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        remote = Store("s3://bench/store", endpoint_url=endpoint)
        s3_s, s3_commit_s = transactional_pass(remote, jobs, CLIPS, args.workers, step, per_chunk)
        s3_commit_ms = empty_commits_ms(remote, args.commits)
        result = {
            "videos": n, "frames_per_video": frames, "workers": args.workers, "videos_per_task": step,
            "repeats": args.repeats, "clips_per_chunk": per_chunk,
            "plain_videos_per_s": round(n / plain_s, 2),
            "transactional_videos_per_s": round(n / tx_s, 2),
            "ratio_vs_plain": round(plain_s / tx_s, 3),
            "zarr_local_videos_per_s": round(n / local_s, 2),
            "ratio_vs_zarr_local": round(local_s / tx_s, 3),
            "commits": len(commit_s),
            "commit_ms": round(sum(commit_s) / len(commit_s) * 1000, 1),
            "empty_commit_ms": {"local": round(local_commit_ms, 1), "s3": round(s3_commit_ms, 1)},
            "s3_videos_per_s": round(n / s3_s, 2),
            "s3_commit_ms": round(sum(s3_commit_s) / len(s3_commit_s) * 1000, 1),
            "s3": "moto ThreadedMotoServer on 127.0.0.1 (in-process, in memory)",
        }
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["cpu"] = cpu_name()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
