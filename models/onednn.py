"""Linear layers and the appearance BiLSTM on CPU through oneDNN's matrix product.

PyTorch hands float32 matrix products on CPU to MKL, whose code path on AMD processors runs at about half
the speed of oneDNN's (192 against 350-450 GFLOP/s on the development machine, benchmarks in
docs/benchmarks.md). oneDNN's linear op (`torch.ops.mkldnn._linear_pointwise`, the one inductor uses; torch
is pinned) has no autograd, so the two functions here carry their own backward passes. They compute the same
function as `F.linear` and `nn.LSTM`, up to float32 rounding. GPUs, autocast, other dtypes and code being
traced by torch.compile take the stock PyTorch path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable


def _has_linear_op() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_HAS_LINEAR_OP = _has_linear_op()


def uses_onednn(*tensors: torch.Tensor) -> bool:
    """True where these float32 CPU tensors should go through oneDNN rather than the stock path."""
    return (
        _HAS_LINEAR_OP
        and torch.backends.mkldnn.enabled
        # oneDNN cannot describe an empty product; the stock path handles empty batches.
        and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.numel() for t in tensors)
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def _mm_nt(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a [M, K] @ b[N, K].T (+ bias [N]) -> [M, N]; a and b may be transposed views."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _mm_nt(x, weight, bias)  # [M, N]

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = _mm_nt(grad, weight.t()) if need_x else None  # [M, K]
        grad_w = _mm_nt(grad.t(), x.t()) if need_w else None  # [N, K]
        grad_b = grad.sum(0) if ctx.has_bias and need_b else None  # [N]
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear: x [..., K], weight [N, K], bias [N] -> [..., N]."""
    # Every layer, small ones too (where the custom function's ~70 us a call costs more than it saves):
    # MKL's float32 results for a sample change with the batch size, oneDNN's do not (from 2 rows up).
    if not uses_onednn(x, weight):
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])  # [M, K]
    return _Linear.apply(flat, weight, bias).view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) whose CPU float32 product runs on oneDNN."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias)


class _BiLSTMFinalStates(torch.autograd.Function):
    """Final hidden states of a one-layer bidirectional LSTM; PyTorch's gate order (i, f, g, o).

    The input projection of all time steps is one product per direction, and so is its weight gradient;
    the backward pass computes the input's gradient only when the input needs one (frame features never
    do: that product is a third of what the stock oneDNN LSTM's backward spends). Everything is indexed by
    time step t, whichever way a direction runs.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, x: torch.Tensor, *weights: torch.Tensor
    ) -> torch.Tensor:
        # weights: w_ih, w_hh, b_ih, b_hh of the forward direction, then of the reverse one.
        batch, steps, features = x.shape
        hidden = weights[1].shape[1]
        by_time = x.transpose(0, 1).reshape(steps * batch, features)  # [T*B, D], rows (t, b)
        # Per direction and time step: gate activations, the cell's input states and its output cell state.
        gates = x.new_empty(2, steps, batch, 4 * hidden)
        h_in = x.new_empty(2, steps, batch, hidden)
        c_in = x.new_empty(2, steps, batch, hidden)
        c_out = x.new_empty(2, steps, batch, hidden)
        final = x.new_empty(2, batch, hidden)
        for d in (0, 1):
            w_ih, w_hh, b_ih, b_hh = weights[4 * d:4 * d + 4]
            projected = _mm_nt(by_time, w_ih, b_ih + b_hh).view(steps, batch, 4 * hidden)  # [T, B, 4H]
            h, c = x.new_zeros(batch, hidden), x.new_zeros(batch, hidden)  # [B, H] each
            for t in (range(steps) if d == 0 else reversed(range(steps))):
                h_in[d, t], c_in[d, t] = h, c
                act = gates[d, t]  # [B, 4H]
                pre = projected[t] + _mm_nt(h, w_hh)  # [B, 4H]
                torch.sigmoid(pre, out=act)
                torch.tanh(pre[:, 2 * hidden:3 * hidden], out=act[:, 2 * hidden:3 * hidden])
                i, f, g, o = act.chunk(4, dim=1)  # [B, H] each
                c = torch.addcmul(f * c, i, g, out=c_out[d, t])  # [B, H]
                h = o * torch.tanh(c)  # [B, H]
            final[d] = h
        ctx.save_for_backward(by_time, *weights, gates, h_in, c_in, c_out)
        ctx.shape = (batch, steps, features)
        return final  # [2, B, H]

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_final: torch.Tensor):  # type: ignore[override]
        by_time, *weights, gates, h_in, c_in, c_out = ctx.saved_tensors
        batch, steps, features = ctx.shape
        hidden = h_in.shape[-1]
        need = ctx.needs_input_grad
        grad_x = by_time.new_zeros(steps * batch, features) if need[0] else None  # [T*B, D]
        grads: list[torch.Tensor | None] = []
        for d in (0, 1):
            w_ih, w_hh = weights[4 * d], weights[4 * d + 1]
            grad_gates = by_time.new_empty(steps * batch, 4 * hidden)  # pre-activation, rows (t, b)
            grad_h = grad_final[d]  # [B, H]
            grad_c = torch.zeros_like(grad_h)
            for t in (reversed(range(steps)) if d == 0 else range(steps)):
                i, f, g, o = gates[d, t].chunk(4, dim=1)  # [B, H] each
                step_grad = grad_gates[t * batch:(t + 1) * batch]  # [B, 4H]
                d_i, d_f, d_g, d_o = step_grad.chunk(4, dim=1)  # [B, H] views
                tanh_c = torch.tanh(c_out[d, t])
                torch.mul(grad_h * tanh_c, o * (1 - o), out=d_o)
                grad_c = grad_c + grad_h * o * (1 - tanh_c * tanh_c)
                torch.mul(grad_c * g, i * (1 - i), out=d_i)
                torch.mul(grad_c * c_in[d, t], f * (1 - f), out=d_f)
                torch.mul(grad_c * i, 1 - g * g, out=d_g)
                grad_c = grad_c * f
                grad_h = _mm_nt(step_grad, w_hh.t())  # [B, H]
            if grad_x is not None:
                grad_x += _mm_nt(grad_gates, w_ih.t())  # [T*B, D]
            by_gate = grad_gates.t().contiguous()  # [4H, T*B]: oneDNN would copy a transposed left factor twice
            grad_w_ih = _mm_nt(by_gate, by_time.t()) if need[4 * d + 1] else None  # [4H, D]
            grad_w_hh = _mm_nt(by_gate, h_in[d].reshape(steps * batch, hidden).t()) if need[4 * d + 2] else None
            grad_bias = grad_gates.sum(dim=0)  # [4H]
            grads += [grad_w_ih, grad_w_hh, grad_bias, grad_bias]
        if grad_x is not None:
            grad_x = grad_x.view(steps, batch, features).transpose(0, 1)  # [B, T, D]
        return (grad_x, *grads)


def bilstm_final_states(lstm: nn.LSTM, sequences: torch.Tensor) -> torch.Tensor:
    """Final hidden states [2, N, H] of a one-layer, batch-first, bidirectional `lstm` over [N, T, D]."""
    if not (lstm.bidirectional and lstm.batch_first and lstm.num_layers == 1 and lstm.bias and lstm.proj_size == 0):
        raise ValueError("bilstm_final_states needs a one-layer, batch-first, bidirectional LSTM with biases")
    weights = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0,
               lstm.weight_ih_l0_reverse, lstm.weight_hh_l0_reverse, lstm.bias_ih_l0_reverse, lstm.bias_hh_l0_reverse]
    if not uses_onednn(sequences, *weights):
        _, (final_states, _) = lstm(sequences)
        return final_states  # [2, N, H]
    return _BiLSTMFinalStates.apply(sequences, *weights)
