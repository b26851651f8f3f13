"""Weight-only quantized linear layers: close to float, smaller, differentiable in x."""

import numpy as np
import pytest

from lmcore.autograd import Tensor
from lmcore.gradcheck import gradcheck
from lmcore.nn import GELU, Linear, Sequential
from lmcore.nn import quantized as qmod
from lmcore.nn.quantized import Int4Linear, Int8Linear, QuantizedLinear, quantize_model


def _layer(seed=0, in_features=128, out_features=48):
    layer = Linear(in_features, out_features)
    layer.weight.data[...] = np.random.default_rng(seed).normal(size=layer.weight.shape) * 0.05
    return layer


@pytest.mark.parametrize("make, bits, tolerance", [(Int8Linear, 8, 0.01), (Int4Linear, 4, 0.2)])
def test_outputs_close_to_float_and_bytes_smaller(make, bits, tolerance):
    layer = _layer()
    q = make(layer)
    x = Tensor(np.random.default_rng(1).normal(size=(3, 5, 128)).astype(np.float32))
    exact, approx = layer(x).numpy(), q(x).numpy()
    relative = np.abs(approx - exact).max() / np.abs(exact).max()
    assert relative < tolerance, relative
    float_bytes = layer.weight.data.nbytes
    assert q.weight_nbytes() <= float_bytes / (3.8 if bits == 8 else 6)  # codes + scales


def test_blockwise_matmul_equals_dequantized_weight(monkeypatch):
    monkeypatch.setattr(qmod, "ROWS_PER_BLOCK", 7)  # several blocks, the last one short
    layer = _layer(out_features=30)
    q = QuantizedLinear.from_linear(layer, bits=4, group_size=32)
    x = np.random.default_rng(2).normal(size=(4, 128)).astype(np.float32)
    expected = x @ q.dequantized_weight().T + layer.bias.numpy()
    np.testing.assert_allclose(q(Tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_gradient_of_the_input_gradchecks():
    layer = Linear(64, 6, bias=False, dtype="float64")
    q = QuantizedLinear.from_linear(layer, bits=8, group_size=32)
    x = Tensor(np.random.default_rng(3).normal(size=(2, 64)), requires_grad=True)
    assert gradcheck(lambda t: q(t), x)


def test_quantize_model_swaps_linears_and_skips():
    model = Sequential(Linear(8, 16), GELU(), Linear(16, 4))
    quantize_model(model, bits=8, skip={"2"})
    assert [type(m).__name__ for m in model] == ["QuantizedLinear", "GELU", "Linear"]


def test_clear_errors():
    with pytest.raises(ValueError, match="bits=8 or bits=4"):
        QuantizedLinear.from_linear(Linear(4, 4), bits=3)
    with pytest.raises(ValueError, match="must divide the input width"):
        QuantizedLinear.from_linear(Linear(10, 4), bits=8, group_size=4)
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 4\)"):
        Int8Linear(Linear(4, 2))(Tensor(np.ones((1, 5), np.float32)))


@pytest.mark.parametrize("bits, group_size", [(8, None), (8, 32), (4, 32), (4, 64)])
def test_the_kernels_reference_computes_what_the_layer_computes(bits, group_size):
    """lmcore.cuda.reference.quantized_matmul, written apart from the layer, is what the
    fused GPU kernel is checked against: it must agree with the layer on the CPU."""
    from lmcore.cuda import reference

    layer = _layer(seed=4, in_features=128, out_features=40)
    q = QuantizedLinear.from_linear(layer, bits=bits, group_size=group_size)
    x = np.random.default_rng(5).normal(size=(3, 128)).astype(np.float32)
    expected = reference.quantized_matmul(x, q.codes.data, q.scales.data, bits)
    got = q(Tensor(x)).numpy() - layer.bias.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
