"""The residual add fused with the next LayerNorm: same values and gradients as the two
operations, float64 gradient check, and the Transformer block that uses it unchanged."""

import numpy as np
import pytest

import lmcore.functional as F
from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.gradcheck import gradcheck
from lmcore.nn import Block


def tensors(shape, dtype, seed=0, grad=True):
    rng = np.random.default_rng(seed)
    return Tensor(rng.normal(size=shape).astype(dtype), requires_grad=grad)


@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_gradcheck_float64(affine):
    x, branch = tensors((2, 3, 5), np.float64, 0), tensors((2, 3, 5), np.float64, 1)
    params = [tensors((5,), np.float64, 2 + k) for k, on in enumerate(affine) if on]

    def both(x, branch, *params):  # one scalar from both outputs, so both gradients flow
        weight = params[0] if affine[0] else None
        bias = params[-1] if affine[1] else None
        total, y = F.residual_layer_norm(x, branch, weight, bias)
        return (total * total).sum() + (y * branch).sum()

    assert gradcheck(both, x, branch, *params)


def test_values_and_gradients_equal_the_two_operations():
    x, branch = tensors((4, 7, 16), np.float32, 0), tensors((4, 7, 16), np.float32, 1)
    w, b = tensors((16,), np.float32, 2), tensors((16,), np.float32, 3)
    up = np.random.default_rng(4).normal(size=(4, 7, 16)).astype(np.float32)
    total, y = F.residual_layer_norm(x, branch, w, b, eps=1e-5)
    (total * Tensor(up) + y * y).sum().backward()
    fused = [
        t.grad.copy() if hasattr(t.grad, "copy") else t.grad.clone() for t in (x, branch, w, b)
    ]
    for t in (x, branch, w, b):
        t.grad = None
    total2 = x + branch
    y2 = F.layer_norm(total2, (16,), w, b, eps=1e-5)
    (total2 * Tensor(up) + y2 * y2).sum().backward()
    np.testing.assert_allclose(total.numpy(), total2.numpy(), rtol=1e-6)
    np.testing.assert_allclose(y.numpy(), y2.numpy(), rtol=1e-5, atol=1e-6)
    for got, t in zip(fused, (x, branch, w, b)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_only_the_sum_used_passes_its_gradient_to_both_inputs():
    x, branch = tensors((3, 4), np.float64, 0), tensors((3, 4), np.float64, 1)
    total, _ = F.residual_layer_norm(x, branch)
    total.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((3, 4)))
    np.testing.assert_array_equal(branch.grad.numpy(), np.ones((3, 4)))


def test_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        F.residual_layer_norm(np.zeros((2, 3)), np.zeros((2, 4)))


def test_float16_sums_in_float16_and_normalizes_in_float32():
    x = Tensor(np.ones((2, 8), np.float16))
    total, y = F.residual_layer_norm(x, Tensor(np.arange(16, dtype=np.float16).reshape(2, 8)))
    assert total.dtype == np.float16 and y.dtype == np.float16
    assert np.allclose(y.numpy().astype(np.float32).mean(-1), 0, atol=1e-3)


def test_block_with_the_fusion_equals_the_block_written_out():
    block = Block(16, 2)
    x = tensors((2, 5, 16), np.float32, 0, grad=False)
    h = x + block.attn(block.ln_1(x))
    expected = h + block.mlp(block.ln_2(h))
    np.testing.assert_allclose(block(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(backend.device() != "cuda", reason="no GPU")
def test_the_kernel_path_equals_numpy():  # pragma: no cover - runs where a GPU is
    import cupy as cp

    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=s).astype(np.float32) for s in ((6, 33, 384), (6, 33, 384), (384,), (384,))
    ]
    up = rng.normal(size=(6, 33, 384)).astype(np.float32)
    results = []
    for xp in (np, cp):
        x, branch, w, b = (Tensor(xp.asarray(a), requires_grad=True) for a in arrays)
        total, y = F.residual_layer_norm(x, branch, w, b)
        (total * Tensor(xp.asarray(up)) + y * y).sum().backward()
        results.append([backend.to_numpy(t.data) for t in (total, y)]
                       + [backend.to_numpy(t.grad.data) for t in (x, branch, w, b)])  # fmt: skip
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)
