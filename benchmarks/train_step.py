"""Training throughput of the QA stage on cached random features, as the train flow runs it.

Prints one JSON object. Features sit in a temporary Zarr store and are held in memory (the default), so
the numbers cover batching (float16 -> float32), the forward, cross-entropy only (alpha = beta = 0),
backward, gradient clipping and the Adam step. CPU runs the default (train.amp_cpu: false, float32;
cpu_precision says which) and, where the CPU has native bf16, bf16 autocast (the opt-in); GPU runs bf16
autocast (train.amp). peak_mem_mb is CUDA's
peak allocation on GPU and the process's peak resident set size on CPU (Python and torch included).

    python benchmarks/train_step.py               # paper size, batch 32 on CPU (+ batch 256 on GPU) and demo size
    python benchmarks/train_step.py --steps 20
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from configs.schema import ModelConfig, StageConfig, TrainConfig  # noqa: E402
from models.registry import build_model  # noqa: E402
from models.types import Batch  # noqa: E402
from storage.qa_dataset import QAArrays, QADataset, VideoArrays  # noqa: E402
from storage.store import Store  # noqa: E402
from tasks.device import tune_kernels_for  # noqa: E402
from tasks.train.precision import precision_name  # noqa: E402
from tasks.train.loop import make_loader, make_optimizer, qa_loss_fn, train_epoch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name  # noqa: E402


@dataclass(frozen=True)
class Size:
    clips: int
    frames: int
    appearance_dim: int
    motion_dim: int
    module_dim: int
    unit_layers: int
    question_vocab: int
    answer_vocab: int
    question_len: int


# DualVGR on MSVD-QA: ResNet-101 / ResNeXt-101 features, 8 clips of 16 frames.
PAPER = Size(8, 16, 2048, 2048, 768, 2, 4000, 1854, 10)
# The seed's end-to-end MSVQA: 30,000 batches of 10 in 20 h 26 min on one RTX 3090.
SEED_E2E_SAMPLES_PER_S = 30_000 * 10 / (20 * 3600 + 26 * 60)
# configs/demo.yaml: tiny backbones (128-d), 4 clips of 4 frames, its synthetic vocabularies.
DEMO = Size(4, 4, 128, 128, 128, 1, 29, 19, 8)


def dataset(size: Size, questions: int, folder: Path, videos: int = 64) -> QADataset:
    rng = np.random.default_rng(0)
    group = Store(folder / "store.zarr").spec_group("bench", "features", {"size": repr(size)})
    app_shape = (videos, size.clips, size.frames, size.appearance_dim)
    group.ensure_array("appearance", app_shape, "float16", chunks=(1,) + app_shape[1:])
    group.ensure_array("motion", (videos, size.clips, size.motion_dim), "float16",
                       chunks=(1, size.clips, size.motion_dim))
    group.write("appearance", rng.standard_normal(app_shape, dtype=np.float32).astype(np.float16))
    motion = rng.standard_normal((videos, size.clips, size.motion_dim), dtype=np.float32)
    group.write("motion", motion.astype(np.float16))
    lengths = rng.integers(3, size.question_len + 1, size=questions)
    arrays = QAArrays(questions=rng.integers(1, size.question_vocab, size=(questions, size.question_len)),
                      lengths=lengths, answers=rng.integers(0, size.answer_vocab, size=questions),
                      answer_known=np.ones(questions, bool), video_ids=np.arange(questions) % videos,
                      question_ids=np.arange(questions), qtypes=np.zeros(questions, np.int8),
                      video_rows=np.arange(questions) % videos)
    return QADataset(arrays, VideoArrays(group.ref, ("appearance", "motion"), in_memory=True))


def timed_training(model: torch.nn.Module, next_batches: Callable[[int], list], batch: int, steps: int,
                   warmup: int, device: str, amp: bool) -> dict[str, float]:
    """Train on `warmup` untimed batches, then time `steps` more: samples/s and peak memory.

    The training loop itself: copies to the device, forward, cross-entropy, backward, clipping, Adam.
    """
    cfg = StageConfig(batch_size=batch, lr=1e-4)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)

    def run(n: int) -> None:
        train_epoch(model, qa_loss_fn(), next_batches(n), optimizer, params, cfg.grad_clip, device, amp)

    run(warmup)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run(steps)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"samples_per_s": round(steps * batch / elapsed, 3), "peak_mem_mb": round(peak, 1)}


def measure(size: Size, batch: int, steps: int, warmup: int, device: str, amp: bool) -> dict[str, float]:
    """DualVGR on cached features from a Zarr store, through the training DataLoader."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(module_dim=size.module_dim, unit_layers=size.unit_layers),
                        question_vocab_size=size.question_vocab, answer_vocab_size=size.answer_vocab,
                        appearance_dim=size.appearance_dim, motion_dim=size.motion_dim, num_clips=size.clips,
                        frames_per_clip=size.frames).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        data = dataset(size, batch * (steps + warmup), Path(tmp))
        batches = iter(make_loader(data, batch, shuffle=True, pin_memory=device.startswith("cuda")))
        return timed_training(model, lambda n: [next(batches) for _ in range(n)], batch, steps, warmup, device, amp)


def clip_batches(size: Size, batch: int, count: int, appearance_px: int, motion_px: int) -> list[Batch]:
    """`count` batches of random uint8 clips and questions, as the clip store's loader hands them over."""
    g = torch.Generator().manual_seed(0)
    c, f = size.clips, size.frames
    return [Batch(question=torch.randint(1, size.question_vocab, (batch, size.question_len), generator=g),
                  question_len=torch.full((batch,), size.question_len),
                  appearance_clips=torch.randint(0, 256, (batch, c, f, appearance_px, appearance_px, 3),
                                                 dtype=torch.uint8, generator=g),
                  motion_clips=torch.randint(0, 256, (batch, c, f, motion_px, motion_px, 3), dtype=torch.uint8,
                                             generator=g),
                  answer=torch.randint(0, size.answer_vocab, (batch,), generator=g))
            for _ in range(count)]


def measure_end_to_end(backbones: tuple[str, str], batch: int, steps: int, warmup: int, device: str,
                       amp: bool) -> dict[str, float]:
    """MSVQA's QA stage with both backbones training, from uint8 clips at the paper's 224 / 112 px.

    Batches are built in memory: this is the model's step (normalisation on the device, both backbones,
    DualVGR, backward, Adam), not the clip store's read speed.
    """
    torch.manual_seed(0)
    size = PAPER
    model = build_model(ModelConfig(name="msvqa", module_dim=size.module_dim, unit_layers=size.unit_layers),
                        appearance_backbone=backbones[0], motion_backbone=backbones[1],
                        appearance_normalization="imagenet", motion_normalization="hara",
                        question_vocab_size=size.question_vocab, answer_vocab_size=size.answer_vocab,
                        num_clips=size.clips, frames_per_clip=size.frames).to(device)
    model.set_backbones_trainable(True)
    batches = iter(clip_batches(size, batch, steps + warmup, 224, 112))
    return timed_training(model, lambda n: [next(batches) for _ in range(n)], batch, steps, warmup, device, amp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--no-amp", action="store_true", help="float32 on GPU too (train.amp=false)")
    parser.add_argument("--e2e", choices=("auto", "on", "off"), default="auto",
                        help="end-to-end MSVQA step; auto: on a GPU only (the paper backbones need tens of GB "
                             "to train on 8 x 16 frames, more than a small CPU machine has)")
    parser.add_argument("--e2e-backbones", default="resnet101,resnext101_3d", help="appearance,motion backbones")
    parser.add_argument("--e2e-batch", type=int, default=4,
                        help="videos per end-to-end step, at least 2 (the seed used 10); halved on GPU out-of-memory")
    parser.add_argument("--e2e-steps", type=int, default=4, help="timed end-to-end steps")
    args = parser.parse_args(argv)
    out: dict[str, object] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    # CPU: the default configuration (train.amp_cpu, float32 unless set), then bf16 autocast where the CPU
    # has native bf16 (the opt-in).
    amp_cpu = TrainConfig().amp_cpu
    default = measure(PAPER, 32, args.steps, args.warmup, "cpu", amp=amp_cpu)
    out.update(cpu_precision=precision_name("cpu", amp_cpu), qa_samples_per_s_cpu_paper_b32=default["samples_per_s"],
               qa_peak_mem_mb_cpu_paper_b32=default["peak_mem_mb"])
    if precision_name("cpu", True) != precision_name("cpu", amp_cpu):
        bf16 = measure(PAPER, 32, args.steps, args.warmup, "cpu", amp=True)
        out.update(qa_samples_per_s_cpu_paper_b32_bf16=bf16["samples_per_s"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tune_kernels_for(device)  # as the train flow does
    if device == "cuda":
        gpu = measure(PAPER, 256, args.steps, args.warmup, device, amp=not args.no_amp)
        out.update(gpu=torch.cuda.get_device_name(), amp_gpu=not args.no_amp,
                   qa_samples_per_s_gpu_paper_b256=gpu["samples_per_s"],
                   qa_peak_mem_mb_gpu_paper_b256=gpu["peak_mem_mb"])
    demo_amp = (not args.no_amp) if device == "cuda" else amp_cpu
    demo = measure(DEMO, 64, args.steps * 4, args.warmup, device, amp=demo_amp)
    out.update(demo_device=device, demo_precision=precision_name(device, demo_amp),
               qa_samples_per_s_demo=demo["samples_per_s"])
    if device == "cuda":  # a process's peak RSS only grows, so on CPU only the first measurement's is its own
        out.update(qa_peak_mem_mb_gpu_demo=demo["peak_mem_mb"])
    if args.e2e == "on" or (args.e2e == "auto" and device == "cuda"):
        backbones = tuple(args.e2e_backbones.split(","))
        e2e_amp = (not args.no_amp) if device == "cuda" else amp_cpu
        batch = args.e2e_batch
        while True:
            try:
                e2e = measure_end_to_end(backbones, batch, args.e2e_steps, 1, device, e2e_amp)
                break
            except torch.cuda.OutOfMemoryError:
                if batch <= 2:  # the answer head's batch norm needs two samples in training
                    raise
                batch = max(2, batch // 2)  # report what fits rather than nothing
                torch.cuda.empty_cache()
        out.update(e2e_backbones=args.e2e_backbones, e2e_batch=batch,
                   e2e_precision=precision_name(device, e2e_amp), e2e_samples_per_s=e2e["samples_per_s"],
                   e2e_peak_mem_mb=e2e["peak_mem_mb"],
                   e2e_speedup_vs_seed=round(e2e["samples_per_s"] / SEED_E2E_SAMPLES_PER_S, 2))
    out["cpu"] = cpu_name()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
