"""The autoencoder stage's data path for DualVGR: stored reconstruction targets against full clips.

Prints one JSON object. Builds, in a temporary folder, a store of --videos videos (smooth synthetic uint8
clips, zstd -5 as the clip stage stores them, float16 features, both one video per chunk) and times one
epoch of the autoencoder stage's items (--questions-per-video questions per video, batches of --batch,
one loader process) as DualVGR reads them:

- `clips_lazy`: the path before stored targets: features plus each question's full clip row read from
  the store, targets derived per batch (resize to the decoder's size, normalise);
- `clips_in_memory`: the same with the clip group held in memory (train.clips_in_memory);
- `targets_in_memory`: features plus the stored targets, held in memory (the default when they fit);
- `targets_lazy`: the same read lazily from the store.

Each figure is the epoch's seconds (gathering items, collate, targets as the loss sees them); the bytes
per item are what one item reads: stored (compressed) bytes and decompressed bytes.

    python benchmarks/ae_targets.py --videos 60 --questions-per-video 8
    python benchmarks/ae_targets.py --videos 8 --clips 8 --frames 16 --appearance-size 224 --motion-size 112 \\
        --decoder-size 32   # paper-size clip rows
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from common import cpu_name, peak_rss_mb, positive_int  # noqa: E402  (benchmarks/ is on sys.path as a script)

from configs.loader import load_config  # noqa: E402
from storage.qa_dataset import QAArrays, QADataset, VideoArrays  # noqa: E402
from storage.store import open_store  # noqa: E402
from tasks.features.extract import FEATURE_DTYPE, feature_spec, prepare_feature_group  # noqa: E402
from tasks.train.autoencoder import reconstruction_targets  # noqa: E402
from tasks.train.loop import make_loader  # noqa: E402
from tasks.train.targets import KIND, STREAMS, build_targets, config_targets_spec  # noqa: E402
from tasks.video.clips import clip_spec, prepare_clip_group  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
DIM = 128
NAMES = ("appearance", "motion")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=positive_int, default=60)
    parser.add_argument("--questions-per-video", type=positive_int, default=8)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--clips", type=positive_int, default=4, help="clips per video (demo: 4)")
    parser.add_argument("--frames", type=positive_int, default=4, help="frames per clip (demo: 4)")
    parser.add_argument("--appearance-size", type=positive_int, default=64, help="px (demo: 64)")
    parser.add_argument("--motion-size", type=positive_int, default=32, help="px (demo: 32)")
    parser.add_argument("--decoder-size", type=positive_int, default=16, help="px (demo: 16)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser.parse_args(argv)


def smooth_clip(rng: np.random.Generator, c: int, f: int, size: int) -> np.ndarray:
    """uint8 [c, f, size, size, 3]: blocky colour fields plus a little noise, so zstd finds some redundancy."""
    block = max(1, size // 8)
    coarse = rng.integers(0, 256, size=(c, f, size // block, size // block, 3))
    image = np.repeat(np.repeat(coarse, block, axis=2), block, axis=3)
    return np.clip(image + rng.integers(-2, 3, size=image.shape), 0, 255).astype(np.uint8)


def fill_store(config, videos: int) -> None:
    """Clips and features of every video, complete, in one commit each."""
    store = open_store(config.store)
    cfg, rng = config.clips, np.random.default_rng(0)
    c, f = cfg.num_clips, cfg.frames_per_clip
    clips = store.spec_group(config.dataset.name, "clips", clip_spec(cfg))

    def write_clips(tx) -> None:
        group = tx.open(clips.ref)
        prepare_clip_group(group, cfg, videos)
        for row in range(videos):
            group.write("appearance", smooth_clip(rng, c, f, cfg.appearance_size), row=row)
            group.write("motion", smooth_clip(rng, c, f, cfg.motion_size), row=row)
        group.update_attrs(video_ids=list(range(1, videos + 1)), names=[f"v{i}" for i in range(1, videos + 1)])
        group.mark_complete(range(videos))

    store.transact(write_clips, stage="clips", message="benchmark clips")
    features = store.spec_group(config.dataset.name, "features", feature_spec(config.features, clips.ref.spec_hash))

    def write_features(tx) -> None:
        group = tx.open(features.ref)
        prepare_feature_group(group, videos, c, f, (DIM, DIM))
        group.write("appearance", rng.normal(size=(videos, c, f, DIM)).astype(FEATURE_DTYPE))
        group.write("motion", rng.normal(size=(videos, c, DIM)).astype(FEATURE_DTYPE))
        group.mark_complete(range(videos))

    store.transact(write_features, stage="features", message="benchmark features")


def questions(videos: int, per_video: int) -> QAArrays:
    n = videos * per_video
    rng = np.random.default_rng(1)
    return QAArrays(questions=rng.integers(2, 50, size=(n, 8)), lengths=rng.integers(3, 9, size=n),
                    answers=rng.integers(0, 10, size=n), answer_known=np.ones(n, bool), video_ids=np.arange(n) % videos,
                    question_ids=np.arange(n), qtypes=np.zeros(n, np.int8), video_rows=np.arange(n) % videos)


def epoch_seconds(dataset: QADataset, batch: int, size: int) -> float:
    """One shuffled epoch: items gathered, collated, and the loss's targets made from what they carry."""
    started = time.perf_counter()
    for item in make_loader(dataset, batch, shuffle=True, seed=0):
        reconstruction_targets(item, size)
    return time.perf_counter() - started


def per_row_bytes(group, names: tuple[str, ...]) -> dict[str, int]:
    infos = [info for info in group.array_info() if info["name"] in names]
    rows = group.num_rows
    raw = sum(int(np.prod(info["shape"][1:])) * np.dtype(info["dtype"]).itemsize for info in infos)
    return {"stored": round(sum(info["bytes_stored"] for info in infos) / rows), "decompressed": raw}


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="msvqa-ae-targets-bench-") as tmp:
        config = load_config(DEMO, [f"store.path={Path(tmp) / 'store.zarr'}", f"data_dir={tmp}", "model.name=dualvgr",
                                    f"clips.num_clips={args.clips}", f"clips.frames_per_clip={args.frames}",
                                    f"clips.appearance_size={args.appearance_size}",
                                    f"clips.motion_size={args.motion_size}", f"model.decoder_size={args.decoder_size}"])
        fill_store(config, args.videos)
        started = time.perf_counter()
        built = build_targets(config)
        build_seconds = time.perf_counter() - started
        store = open_store(config.store, mode="r")
        clips = store.peek(config.dataset.name, "clips", clip_spec(config.clips))
        features = store.peek(config.dataset.name, "features", feature_spec(config.features, clips.ref.spec_hash))
        targets = store.peek(config.dataset.name, KIND, config_targets_spec(config, clips.ref.spec_hash))
        arrays = questions(args.videos, args.questions_per_video)
        feature_arrays = VideoArrays(features.ref, NAMES, in_memory=True)
        paths = {
            "clips_lazy": QADataset(arrays, feature_arrays, clips=VideoArrays(clips.ref, NAMES, in_memory=False)),
            "clips_in_memory": QADataset(arrays, feature_arrays, clips=VideoArrays(clips.ref, NAMES, in_memory=True)),
            "targets_in_memory": QADataset(arrays, feature_arrays, targets=VideoArrays(targets.ref, STREAMS, True)),
            "targets_lazy": QADataset(arrays, feature_arrays, targets=VideoArrays(targets.ref, STREAMS, False)),
        }
        seconds = {name: epoch_seconds(dataset, args.batch, args.decoder_size) for name, dataset in paths.items()}
        clip_bytes, target_bytes = per_row_bytes(clips, NAMES), per_row_bytes(targets, STREAMS)
    items = len(arrays)
    return {
        "benchmark": "ae_targets",
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "videos": args.videos,
        "items_per_epoch": items,
        "batch": args.batch,
        "clip_shape": {"clips": args.clips, "frames": args.frames, "appearance": args.appearance_size,
                       "motion": args.motion_size},
        "decoder_size": args.decoder_size,
        "epoch_seconds": {name: round(value, 4) for name, value in seconds.items()},
        "ms_per_item": {name: round(1000 * value / items, 4) for name, value in seconds.items()},
        "speedup_targets_in_memory_vs_clips_lazy": round(seconds["clips_lazy"] / seconds["targets_in_memory"], 1),
        "bytes_per_item": {"clips": clip_bytes, "targets": target_bytes},
        "targets_build_seconds": round(build_seconds, 3),
        "targets_built_rows": len(built["built"]),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
