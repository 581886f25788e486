"""Does MSVQA fit this device at the configured batch? One QA-stage optimizer step, measured.

Loads the config (default configs/msvd_qa.yaml with the MSVQA settings its comments document), builds
MSVQA with the configured backbones (random init: memory and speed do not depend on the weights), and
runs one optimizer step over random uint8 clips as the training loop does: `train.qa.batch_size / 
train.qa.accumulate` questions per slice. Peak memory is that of one slice, so two slices stand in for
all of them; the step time is extrapolated to the full accumulation. Prints one JSON object.

    python benchmarks/msvqa_memory.py                         # the documented MSVQA settings
    python benchmarks/msvqa_memory.py --set train.qa.accumulate=32
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from configs.loader import load_config  # noqa: E402
from models.registry import build_model  # noqa: E402
from models.types import Batch  # noqa: E402
from tasks.device import resolve_device, tune_kernels_for  # noqa: E402
from tasks.train.loop import make_optimizer, qa_loss_fn, train_epoch  # noqa: E402
from tasks.train.precision import precision_name  # noqa: E402

# The MSVQA settings configs/msvd_qa.yaml documents (keep the two in step).
MSVQA_SETTINGS = ["model.name=msvqa", "model.checkpoint_activations=true", "train.autoencoder.accumulate=16",
                  "train.qa.accumulate=64"]
QUESTION_VOCAB, ANSWER_VOCAB, QUESTION_LEN = 4000, 1854, 10


def random_clips(batch: int, clips: int, frames: int, appearance_px: int, motion_px: int) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(question=torch.randint(1, QUESTION_VOCAB, (batch, QUESTION_LEN), generator=g),
                 question_len=torch.full((batch,), QUESTION_LEN),
                 appearance_clips=torch.randint(0, 256, (batch, clips, frames, appearance_px, appearance_px, 3),
                                                dtype=torch.uint8, generator=g),
                 motion_clips=torch.randint(0, 256, (batch, clips, frames, motion_px, motion_px, 3),
                                            dtype=torch.uint8, generator=g),
                 answer=torch.randint(0, ANSWER_VOCAB, (batch,), generator=g))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "msvd_qa.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args(argv)
    config = load_config(args.config, MSVQA_SETTINGS + args.overrides, base_dir=REPO)
    stage, clips, features = config.train.qa, config.clips, config.features
    device = resolve_device(config.train.device)
    tune_kernels_for(device)
    amp = config.train.amp if device.startswith("cuda") else config.train.amp_cpu
    slice_size = stage.batch_size // stage.accumulate
    torch.manual_seed(0)
    model = build_model(config.model, appearance_backbone=features.appearance.backbone,
                        motion_backbone=features.motion.backbone,
                        appearance_normalization=features.appearance.normalization,
                        motion_normalization=features.motion.normalization, question_vocab_size=QUESTION_VOCAB,
                        answer_vocab_size=ANSWER_VOCAB, num_clips=clips.num_clips,
                        frames_per_clip=clips.frames_per_clip, word_dim=config.text.word_dim).to(device)
    model.set_backbones_trainable("qa" in config.model.train_backbones)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, stage)
    batch = random_clips(2 * slice_size, clips.num_clips, clips.frames_per_clip, clips.appearance_size,
                         clips.motion_size)
    result = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
              "precision": precision_name(device, amp), "batch_size": stage.batch_size,
              "accumulate": stage.accumulate, "slice": slice_size,
              "checkpoint_activations": config.model.checkpoint_activations}
    try:
        train_epoch(model, qa_loss_fn(), [batch], optimizer, params, stage.grad_clip, device, amp, accumulate=2)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        train_epoch(model, qa_loss_fn(), [batch], optimizer, params, stage.grad_clip, device, amp, accumulate=2)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_slice = (time.perf_counter() - started) / 2
        peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        result.update(fits=True, peak_mem_mb=round(peak, 1), seconds_per_slice=round(per_slice, 3),
                      seconds_per_step=round(per_slice * stage.accumulate, 1))
    except torch.OutOfMemoryError as error:
        result.update(fits=False, error=str(error).splitlines()[0])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
