"""Throughput of `msvqa search` over a feature store: videos scored and questions answered per second.

Prints one JSON object. Builds, in a temporary folder, a feature group of --videos videos at the demo's
sizes (4 clips x 4 frames x 128-d appearance, 4 x 128-d motion, float16, one video per chunk as the
feature stage writes it) and an untrained bundle of the demo's model (configs/demo.yaml, vocabulary of
the synthetic questions). One search = one question scored against every stored video (read from Zarr,
batched through the model, ranked); --searches of them are timed after one untimed warm-up search.
read_seconds_per_search is the Zarr reading alone, for the same batches.

    python benchmarks/search.py --videos 2000 --batch 256
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
from common import peak_rss_mb, positive_int  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from configs.loader import load_config  # noqa: E402
from models.input_norm import StandardizedInputs  # noqa: E402
from models.registry import build_model, count_parameters  # noqa: E402
from storage.store import open_store, spec_hash  # noqa: E402
from tasks.serving.bundle import load_bundle, save_bundle  # noqa: E402
from tasks.video.clips import clip_spec  # noqa: E402
from tasks.features.extract import FEATURE_DTYPE, feature_spec, prepare_feature_group  # noqa: E402
from tasks.serving.search import _read_rows, search_bundle  # noqa: E402
from tasks.ingest.synth import plan_videos, questions_for  # noqa: E402
from tasks.text.annotations import QARecord  # noqa: E402
from tasks.text.vocabulary import build_vocabularies  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
DIM = 128
QUESTIONS = ("what color is the square at the beginning?", "how does the circle move?",
             "who is moving across the screen?", "where does the red object move?")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=positive_int, default=2000, help="videos in the feature group")
    parser.add_argument("--batch", type=positive_int, default=256, help="videos per forward")
    parser.add_argument("--searches", type=positive_int, default=8, help="timed searches")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser.parse_args(argv)


def make_bundle(folder: Path) -> Path:
    """An untrained demo-sized DualVGR bundle whose store is `folder`/store.zarr."""
    # Search ranks cached features, so the bundle is the demo's feature model (DualVGR), not its end-to-end one.
    config = load_config(DEMO, [f"store.path={folder / 'store.zarr'}", f"data_dir={folder}", "model.name=dualvgr"])
    plans = plan_videos(60, seed=0, frames=48)
    records = [QARecord(i, p.vid, qa.question, qa.answer) for i, (p, qa) in
               enumerate((p, qa) for p in plans for qa in questions_for(p))]
    vocab = build_vocabularies(records)
    torch.manual_seed(0)
    model = build_model(config.model, question_vocab_size=len(vocab.question_token_to_idx),
                        answer_vocab_size=len(vocab.answer_token_to_idx), appearance_dim=DIM, motion_dim=DIM,
                        num_clips=config.clips.num_clips, frames_per_clip=config.clips.frames_per_clip,
                        word_dim=config.text.word_dim)
    model = StandardizedInputs(model, DIM, DIM)
    clips = spec_hash(clip_spec(config.clips))
    hashes = {"clips": clips, "features": spec_hash(feature_spec(config.features, clips))}
    return save_bundle(folder / "bundle.pt", config=config, vocab=vocab, model=model, spec_hashes=hashes, metrics={})


def fill_store(bundle, videos: int) -> None:
    """Random float16 features for every video, written a block of rows at a time, all marked complete."""
    config = bundle.config
    c, f = config.clips.num_clips, config.clips.frames_per_clip
    group = open_store(config.store).spec_group(config.dataset.name, "features", bundle.feature_spec)
    prepare_feature_group(group, videos, c, f, (DIM, DIM))
    rng = np.random.default_rng(0)
    for start in range(0, videos, 500):
        rows = slice(start, min(start + 500, videos))
        n = rows.stop - rows.start
        # One commit per array and block of rows (the store is versioned: every write is a transaction).
        group.write_rows("appearance", range(rows.start, rows.stop),
                         rng.normal(size=(n, c, f, DIM)).astype(FEATURE_DTYPE))
        group.write_rows("motion", range(rows.start, rows.stop), rng.normal(size=(n, c, DIM)).astype(FEATURE_DTYPE))
    group.update_attrs(video_ids=list(range(1, videos + 1)), names=[f"video{i}" for i in range(1, videos + 1)])
    group.mark_complete(range(videos))


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="msvqa-search-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        bundle = load_bundle(make_bundle(folder))
        load_seconds = time.perf_counter() - started
        fill_store(bundle, args.videos)
        search_bundle(bundle, QUESTIONS[0], top=10, batch_size=args.batch)  # warm-up: first reads, allocator
        times = []
        for index in range(args.searches):
            question = QUESTIONS[index % len(QUESTIONS)]
            answer = "red" if index % 2 else None
            started = time.perf_counter()
            result = search_bundle(bundle, question, answer=answer, top=10, batch_size=args.batch)
            times.append(time.perf_counter() - started)
            assert result["videos_scored"] == args.videos
        group = open_store(bundle.config.store, mode="r").find(bundle.config.dataset.name, "features")[0]
        started = time.perf_counter()
        rows = np.arange(args.videos)
        for start in range(0, args.videos, args.batch):
            for name in ("appearance", "motion"):
                _read_rows(group, name, rows[start:start + args.batch])
        read_seconds = time.perf_counter() - started
    per_search = float(np.median(times))
    return {
        "benchmark": "search",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "videos": args.videos,
        "feature_shape": {"appearance": [bundle.sizes["num_clips"], bundle.sizes["frames_per_clip"], DIM],
                          "motion": [bundle.sizes["num_clips"], DIM]},
        "model": bundle.config.model.name,
        "module_dim": bundle.config.model.module_dim,
        "parameters": count_parameters(bundle.model)[0],
        "batch": args.batch,
        "searches": args.searches,
        "seconds_per_search_median": round(per_search, 4),
        "seconds_per_search_min": round(min(times), 4),
        "questions_per_second": round(1.0 / per_search, 3),
        "videos_scored_per_second": round(args.videos / per_search, 1),
        "read_seconds_per_search": round(read_seconds, 4),
        "bundle_load_seconds": round(load_seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
