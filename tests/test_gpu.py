"""The models and the training step on a CUDA device (skipped without one; scripts/gpu_check.sh runs them)."""

from __future__ import annotations

import math

import pytest
import torch
from test_models import make_batch, tiny_model
from test_training import raw_clip_batches, tiny_msvqa

from configs.schema import StageConfig
from tasks.device import tune_kernels_for
from tasks.train.precision import mixed_precision, precision_name
from tasks.train.loop import make_optimizer, qa_loss_fn, train_epoch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_dualvgr_on_cuda_equals_cpu_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("dualvgr").eval()
    batch = make_batch()
    expected = model(batch).logits  # [B, A]
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # true float32 products
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    got = model.to("cuda")(batch.to("cuda")).logits.cpu()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_autocast_on_cuda_computes_in_bf16() -> None:
    model = tiny_model("dualvgr").to("cuda")
    with mixed_precision("cuda", True):
        logits = model(make_batch().to("cuda")).logits
    assert logits.dtype == torch.bfloat16 and precision_name("cuda", True) == "bf16-autocast"


def test_msvqa_trains_end_to_end_on_cuda_with_bf16_autocast() -> None:
    model = tiny_msvqa().to("cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = make_optimizer(params, StageConfig(batch_size=4, lr=3e-3))
    batches = raw_clip_batches(4)  # uint8 clips on the host, normalised on the device
    losses = [train_epoch(model, qa_loss_fn(), batches, optimizer, params, 5.0, "cuda", amp=True)[0]
              for _ in range(15)]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.7 * losses[0]  # it learns the 16 fixed samples
    assert all(not torch.equal(a, b) for a, b in zip(before, params))  # the backbones train too


def test_cuda_stages_let_cudnn_pick_the_fastest_convolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_kernels_for("cuda:0")
    assert torch.backends.cudnn.benchmark
