"""The oneDNN linear layer and BiLSTM compute what F.linear and nn.LSTM compute, gradients included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models.onednn as onednn
from models.onednn import Linear, bilstm_final_states, linear, uses_onednn

pytestmark = pytest.mark.skipif(not uses_onednn(torch.zeros(1)), reason="this torch build has no oneDNN linear op")


@pytest.fixture()
def product_shapes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shape of every oneDNN product computed while the test runs."""
    shapes: list[tuple[int, ...]] = []
    real = onednn._mm_nt

    def recording(*args: torch.Tensor | None) -> torch.Tensor:
        out = real(*args)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(onednn, "_mm_nt", recording)
    return shapes


def _grads(*tensors: torch.Tensor) -> list[torch.Tensor]:
    grads = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return grads


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_f_linear_forward_and_backward(bias: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, requires_grad=True)  # leading dims are flattened and restored
    weight = torch.randn(4, 7, requires_grad=True)
    b = torch.randn(4, requires_grad=True) if bias else None
    upstream = torch.randn(3, 5, 4)
    leaves = [x, weight] + ([b] if bias else [])

    (F.linear(x, weight, b) * upstream).sum().backward()
    expected = _grads(*leaves)
    out = linear(x, weight, b)
    (out * upstream).sum().backward()

    assert out.shape == (3, 5, 4)
    torch.testing.assert_close(out, F.linear(x, weight, b))
    for got, want in zip(_grads(*leaves), expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("input_grad", [False, True])
def test_linear_computes_the_input_gradient_only_when_needed(input_grad: bool, product_shapes: list) -> None:
    layer = Linear(6, 2)
    x = torch.randn(4, 6, requires_grad=input_grad)
    layer(x).sum().backward()
    # The forward [4, 2], the weight's gradient [2, 6], and the input's [4, 6] only when it wants one.
    assert sorted(product_shapes) == sorted([(4, 2), (2, 6)] + ([(4, 6)] if input_grad else []))
    torch.testing.assert_close(layer.bias.grad, torch.full((2,), 4.0))


def test_linear_module_keeps_nn_linear_state_dict() -> None:
    stock = nn.Linear(6, 3)
    ours = Linear(6, 3)
    ours.load_state_dict(stock.state_dict())
    x = torch.randn(2, 6)
    torch.testing.assert_close(ours(x), stock(x))


def test_a_sample_gets_the_same_result_in_any_batch_of_two_or_more() -> None:
    torch.manual_seed(0)
    layer = Linear(300, 64)
    x = torch.randn(9, 300)
    full = layer(x)
    for size in (2, 3, 5):
        assert torch.equal(layer(x[:size]), full[:size])


def test_empty_batches_go_through_like_f_linear_and_nn_lstm() -> None:
    layer = Linear(3, 5)
    out = layer(torch.randn(0, 3))
    out.sum().backward()
    assert out.shape == (0, 5) and torch.equal(layer.weight.grad, torch.zeros(5, 3))
    lstm = nn.LSTM(3, 2, batch_first=True, bidirectional=True)
    assert bilstm_final_states(lstm, torch.randn(0, 4, 3)).shape == (2, 0, 2)


def test_stock_path_under_autocast_and_for_other_dtypes() -> None:
    x = torch.randn(2, 3)
    assert uses_onednn(x)
    assert not uses_onednn(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_onednn(x)


@pytest.mark.parametrize(("batch", "steps", "input_grad"), [(6, 7, False), (6, 7, True), (1, 1, True)])
def test_bilstm_final_states_match_nn_lstm(batch: int, steps: int, input_grad: bool) -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(12, 5, batch_first=True, bidirectional=True)
    for parameter in lstm.parameters():
        nn.init.uniform_(parameter, -0.5, 0.5)  # large enough that every gate saturates somewhere
    x = torch.randn(batch, steps, 12, requires_grad=input_grad)
    upstream = torch.randn(2, batch, 5)
    leaves = list(lstm.parameters()) + ([x] if input_grad else [])

    _, (reference, _) = lstm(x)
    (reference * upstream).sum().backward()
    expected = _grads(*leaves)
    final = bilstm_final_states(lstm, x)
    (final * upstream).sum().backward()

    assert final.shape == (2, batch, 5)
    torch.testing.assert_close(final, reference)
    for got, want in zip(_grads(*leaves), expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("input_grad", [False, True])
def test_bilstm_computes_the_input_gradient_only_when_needed(input_grad: bool, product_shapes: list) -> None:
    lstm = nn.LSTM(12, 5, batch_first=True, bidirectional=True)
    x = torch.randn(6, 7, 12, requires_grad=input_grad)
    bilstm_final_states(lstm, x).sum().backward()
    input_gradients = [shape for shape in product_shapes if shape == (7 * 6, 12)]  # [T*B, D], one per direction
    assert len(input_gradients) == (2 if input_grad else 0)


def test_bilstm_final_states_uses_the_stock_lstm_where_onednn_does_not_apply() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    _, (reference, _) = lstm(x)
    assert torch.equal(bilstm_final_states(lstm, x), reference)


def test_bilstm_final_states_refuses_other_lstm_shapes() -> None:
    with pytest.raises(ValueError, match="bidirectional"):
        bilstm_final_states(nn.LSTM(4, 3, batch_first=True), torch.randn(2, 5, 4))
