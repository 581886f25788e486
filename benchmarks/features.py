"""Throughput of the appearance (2D, per frame) and motion (3D, per clip) backbones on this machine.

Prints one JSON object. Frames are random uint8 already on the device, so the numbers cover
normalisation plus the backbone forward, not decoding or host-to-device copies. Weights are
random (no checkpoint is needed for timing). peak_mem_mb is CUDA's peak allocation on GPU and
the process's peak resident set size on CPU.

    python benchmarks/features.py --appearance resnet101 --motion resnext101_3d --batch 8 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from common import cpu_name, positive_int  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from models.backbones import NormalizeClips, NormalizeInput, build_backbone  # noqa: E402
from tasks.device import tune_kernels_for  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appearance", default="resnet18", help="2D backbone name")
    parser.add_argument("--motion", default="resnet18_3d", help="3D backbone name")
    parser.add_argument("--batch", type=positive_int, default=4, help="clips per forward (2D: their frames)")
    parser.add_argument("--clips", type=positive_int, default=8, help="clips timed per backbone")
    parser.add_argument("--frames", type=positive_int, default=16, help="frames per clip")
    parser.add_argument("--size-app", type=positive_int, default=224)
    parser.add_argument("--size-mot", type=positive_int, default=112)
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards first")
    args = parser.parse_args(argv)
    for flag, name, kind in (("--appearance", args.appearance, "2d"), ("--motion", args.motion, "3d")):
        try:
            with torch.device("meta"):  # shapes only: just to read the kind
                built_kind = build_backbone(name).kind
        except ValueError as exc:
            parser.error(f"{flag}: {exc}")
        if built_kind != kind:
            parser.error(f"{flag} {name} is not a {kind.upper()} backbone")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(step: Callable[[], torch.Tensor], batches: int, warmup: int, device: torch.device) -> float:
    """Seconds for `batches` calls of `step`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    _sync(device)
    return time.perf_counter() - start


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype]
    tune_kernels_for(device.type)  # as the feature stage does
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    )
    batches = max(1, -(-args.clips // args.batch))  # ceil: at least --clips clips are timed

    # Backbones and normalised inputs are channels-last already, as in the feature stage.
    appearance = build_backbone(args.appearance).eval().to(device)
    normalize_frames = NormalizeInput(appearance.normalization).to(device)
    frames = torch.randint(0, 256, (args.batch * args.frames, args.size_app, args.size_app, 3), dtype=torch.uint8, device=device)

    def appearance_step() -> torch.Tensor:
        return appearance(normalize_frames(frames))  # [B*F, Da]

    motion = build_backbone(args.motion).eval().to(device)
    normalize_clips = NormalizeClips(motion.normalization).to(device)
    clips = torch.randint(0, 256, (args.batch, args.frames, args.size_mot, args.size_mot, 3), dtype=torch.uint8, device=device)

    def motion_step() -> torch.Tensor:
        return motion(normalize_clips(clips))  # [B, Dm]

    with torch.inference_mode(), autocast:
        appearance_s = time_batches(appearance_step, batches, args.warmup, device)
        motion_s = time_batches(motion_step, batches, args.warmup, device)

    timed_clips = batches * args.batch
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "appearance_backbone": args.appearance,
        "motion_backbone": args.motion,
        "batch": args.batch,
        "clips": timed_clips,
        "frames": args.frames,
        "size_app": args.size_app,
        "size_mot": args.size_mot,
        "dtype": args.dtype,
        "appearance_frames_per_s": round(timed_clips * args.frames / appearance_s, 2),
        "motion_clips_per_s": round(timed_clips / motion_s, 2),
        "motion_frames_per_s": round(timed_clips * args.frames / motion_s, 2),
        "peak_mem_mb": round(peak_memory_mb(device), 1),
    }
    result["cpu"] = cpu_name()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
