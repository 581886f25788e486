"""Training throughput of the QA stage on cached random features, as the train flow runs it.

Prints one JSON object. Features sit in a temporary Zarr store and are held in memory (the default), so
the numbers cover batching (float16 -> float32), the forward, cross-entropy only (alpha = beta = 0),
backward, gradient clipping and the Adam step. CPU runs float32 (the default) and, where the CPU has
native bf16, bf16 autocast (train.amp_cpu); GPU runs bf16 autocast (train.amp). peak_mem_mb is CUDA's
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
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from configs.schema import ModelConfig, StageConfig  # noqa: E402
from models.registry import build_model  # noqa: E402
from storage.qa_dataset import QAArrays, QADataset, VideoArrays  # noqa: E402
from storage.store import Store  # noqa: E402
from tasks.evaluation import bf16_supported  # noqa: E402
from tasks.training import make_loader, make_optimizer, qa_loss_fn, train_epoch  # noqa: E402


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


def measure(size: Size, batch: int, steps: int, warmup: int, device: str, amp: bool) -> dict[str, float]:
    """Samples per second over `steps` timed training steps after `warmup` untimed ones."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(module_dim=size.module_dim, unit_layers=size.unit_layers),
                        question_vocab_size=size.question_vocab, answer_vocab_size=size.answer_vocab,
                        appearance_dim=size.appearance_dim, motion_dim=size.motion_dim, num_clips=size.clips,
                        frames_per_clip=size.frames).to(device)
    cfg = StageConfig(batch_size=batch, lr=1e-4)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        data = dataset(size, batch * (steps + warmup), Path(tmp))
        loader = make_loader(data, batch, shuffle=True, pin_memory=device.startswith("cuda"))
        batches = iter(loader)

        def run(n: int) -> None:  # the training loop itself over `n` batches: copies, syncs, clipping, Adam
            train_epoch(model, qa_loss_fn(), [next(batches) for _ in range(n)], optimizer, params, cfg.grad_clip,
                        device, amp)

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
    return {"samples_per_s": round(steps * batch / elapsed, 2), "peak_mem_mb": round(peak, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--no-amp", action="store_true", help="float32 on GPU too (train.amp=false)")
    args = parser.parse_args(argv)
    out: dict[str, object] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    # CPU: float32, the default (train.amp_cpu=false); bf16 autocast as the opt-in, where the CPU has it.
    cpu = measure(PAPER, 32, args.steps, args.warmup, "cpu", amp=False)
    out.update(qa_samples_per_s_cpu_paper_b32=cpu["samples_per_s"], qa_peak_mem_mb_cpu_paper_b32=cpu["peak_mem_mb"])
    if bf16_supported("cpu"):
        cpu_bf16 = measure(PAPER, 32, args.steps, args.warmup, "cpu", amp=True)
        out.update(qa_samples_per_s_cpu_paper_b32_bf16=cpu_bf16["samples_per_s"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        gpu = measure(PAPER, 256, args.steps, args.warmup, device, amp=not args.no_amp)
        out.update(gpu=torch.cuda.get_device_name(), amp_gpu=not args.no_amp,
                   qa_samples_per_s_gpu_paper_b256=gpu["samples_per_s"],
                   qa_peak_mem_mb_gpu_paper_b256=gpu["peak_mem_mb"])
    demo = measure(DEMO, 64, args.steps * 4, args.warmup, device, amp=device == "cuda" and not args.no_amp)
    out.update(demo_device=device, qa_samples_per_s_demo=demo["samples_per_s"])
    if device == "cuda":  # a process's peak RSS only grows, so on CPU only the first measurement's is its own
        out.update(qa_peak_mem_mb_gpu_demo=demo["peak_mem_mb"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
