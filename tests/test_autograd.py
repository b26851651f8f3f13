"""The engine: Tensor, Function, the backward pass, no_grad and detach."""

import gc
import weakref

import numpy as np
import pytest

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad
from lmcore.gradcheck import gradcheck


def leaf(*values, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


# ---------------------------------------------------------------------------
# Tensor basics


def test_construction_dtypes():
    assert Tensor([1.0, 2.0]).dtype == np.float32  # lists and numbers: float32
    assert Tensor(3.0).shape == ()
    assert Tensor(np.zeros(2)).dtype == np.float64  # arrays keep their dtype
    assert Tensor([1, 2]).dtype.kind == "i"  # integer lists stay integers (indices)
    assert Tensor(np.zeros(2), dtype="float32").dtype == np.float32
    with pytest.raises(TypeError, match="floating"):
        Tensor([1, 2], requires_grad=True)


def test_array_like_surface():
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert (x.shape, x.ndim, x.size, len(x), x.device) == ((2, 3), 2, 6, 2, "cpu")
    assert x.T.shape == (3, 2)
    assert x[1, 2].item() == 5.0
    assert isinstance(x.numpy(), np.ndarray)
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert "tensor(" in repr(leaf(1.0)) and "requires_grad=True" in repr(leaf(1.0))
    with pytest.raises(ValueError, match="one element"):
        x.item()


def test_comparisons_give_boolean_tensors_outside_the_graph():
    x = leaf(1.0, -2.0, 3.0)
    for mask in (x > 0, x >= 0, x < 0, x <= 0, x == 1.0, x != 1.0):
        assert mask.dtype == bool and not mask.requires_grad
    assert (x > 0).numpy().tolist() == [True, False, True]
    assert len({x, x}) == 1  # hashable by identity despite element-wise ==


def test_numpy_array_on_the_left_defers_to_tensor():
    x = leaf(1.0, 2.0)
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


# ---------------------------------------------------------------------------
# The backward pass


def test_chain_rule_on_scalars():
    x, y = leaf(2.0), leaf(3.0)
    z = (x * y + x.exp()) / y  # dz/dx = (y + e^x) / y, dz/dy = -e^x / y^2
    z.backward()
    np.testing.assert_allclose(x.grad, (3 + np.exp(2)) / 3)
    np.testing.assert_allclose(y.grad, -np.exp(2) / 9)


def test_a_tensor_used_twice_gets_both_contributions():
    x = leaf(1.0, 2.0)
    y = x * 3
    ((x + y) + (x * x) + y).sum().backward()  # 1 + 3 + 2x + 3
    np.testing.assert_allclose(x.grad, [9.0, 11.0])


def test_gradients_accumulate_across_backward_calls():
    x = leaf(1.0, 2.0)
    (x * x).sum().backward()
    (x * 10).sum().backward()
    np.testing.assert_allclose(x.grad, [12.0, 14.0])
    x.grad = None
    (x * 10).sum().backward()
    np.testing.assert_allclose(x.grad, [10.0, 10.0])


def test_leaf_gradients_own_their_memory():
    a, b = leaf(1.0, 2.0), leaf(3.0, 4.0)
    (a + b).sum().backward()  # addition hands the same array to both inputs
    assert a.grad is not b.grad
    a.grad *= 0  # in place, as an optimizer or gradient clipping would
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    c = leaf(1.0, 2.0, 3.0)
    c.reshape(3, 1).sum().backward()  # the reshaped gradient is a view...
    assert c.grad.data.base is None  # ...but .grad is not


def test_explicit_gradient_for_non_scalar_outputs():
    x = leaf(1.0, 2.0)
    upstream = np.array([10.0, 100.0])
    (x * 2).backward(upstream)
    np.testing.assert_array_equal(x.grad, [20.0, 200.0])
    upstream[:] = 0  # the caller's array is not kept
    np.testing.assert_array_equal(x.grad, [20.0, 200.0])
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))


def test_backward_on_a_leaf_or_a_constant():
    x = leaf(5.0)
    x.backward()
    assert x.grad.item() == 1.0
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).backward()


def test_graph_is_freed_after_backward():
    x = leaf(1.0, 2.0)
    hidden = x * 2
    witness = weakref.ref(hidden)
    loss = (hidden.tanh() * 3).sum()
    del hidden
    gc.collect()
    assert witness() is not None  # the graph keeps the intermediate alive...
    loss.backward()
    gc.collect()
    assert witness() is None  # ...until backward frees it
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()


def test_retain_graph_allows_a_second_pass():
    x = leaf(1.0, 2.0)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])


def test_memory_is_steady_over_many_steps():
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((16, 8)), requires_grad=True)
    x, targets = rng.standard_normal((32, 16)), rng.integers(0, 8, 32)
    live = []
    for step in range(60):
        loss = F.cross_entropy((Tensor(x) @ w).relu(), targets)
        loss.backward()
        w.grad = None
        if step in (10, 59):
            gc.collect()
            live.append(sum(isinstance(o, (Tensor, Function)) for o in gc.get_objects()))
    assert live[1] <= live[0]


def test_deep_graph_has_no_recursion_limit():
    x = leaf(1.0)
    y = x
    for _ in range(10_000):
        y = y + x
    y.backward()
    assert x.grad.item() == 10_001.0
    z = x
    for _ in range(10_000):
        z = z * 1.0
    del z  # freeing an unused deep graph must not recurse either


# ---------------------------------------------------------------------------
# no_grad and detach


def test_no_grad_records_nothing():
    x = leaf(1.0, 2.0)
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2
        with enable_grad():
            z = x * 2
    assert is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad


def test_no_grad_as_decorator():
    @no_grad()
    def evaluate(t):
        return t * 2

    assert not evaluate(leaf(1.0)).requires_grad
    assert is_grad_enabled()


def test_detach_stops_gradients_and_shares_data():
    x = leaf(1.0, 2.0)
    d = (x * 3).detach()
    assert not d.requires_grad and d.is_leaf
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])  # d counted as a constant
    y = x * 1.0
    assert np.shares_memory(y.detach().data, y.data)


def test_requires_grad_propagates():
    a, b = Tensor(np.ones(1, np.float32)), leaf(2.0, dtype=np.float32)
    assert not (a * 2).requires_grad
    assert (a * b).requires_grad
    assert b.is_leaf and not (a * b).is_leaf
    c = Tensor([1.0]).requires_grad_()
    assert c.requires_grad


# ---------------------------------------------------------------------------
# Errors a reader can act on


def test_dtype_mismatch_names_both_dtypes():
    a = Tensor(np.ones(2, np.float32))
    b = Tensor(np.ones(2, np.float64))
    with pytest.raises(
        TypeError, match=r"Add got input 0 of dtype float32 and input 1 of dtype float64"
    ):
        a + b
    with pytest.raises(TypeError, match="float64"):
        a @ np.ones((2, 2))
    assert (a + np.ones(2, np.int64)).dtype == np.float32  # integers follow the tensor


class StandInGpuArray:
    """Looks like an array of another library (as a CuPy array would)."""

    shape, dtype, ndim, size = (2,), np.dtype(np.float32), 1, 2


def test_device_mismatch_names_both_devices():
    a = Tensor(np.ones(2, np.float32))
    b = Tensor._make(np.ones(2, np.float32), None, 0)
    b.data = StandInGpuArray()
    with pytest.raises(TypeError, match=r"input 0 on cpu .* input 1 on cuda .*\.to\("):
        F.mul(a, b)


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_device_mismatch_on_a_real_gpu():
    cp = backend.xp("cuda")
    a = Tensor(np.ones(2, np.float32))
    b = Tensor(cp.ones(2, np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="cpu .* cuda"):
        a + b
    (a.to("cuda") * b).sum().backward()
    assert isinstance(b.grad, Tensor) and isinstance(b.grad.data, cp.ndarray)
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        np.asarray(b.grad)  # as in PyTorch and CuPy: no implicit copy from the GPU
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    c = leaf(1.0, 2.0)
    (c.cuda() * 2).cpu().sum().backward()
    np.testing.assert_array_equal(c.grad, [2.0, 2.0])


def test_custom_function_returning_a_wrong_shape_is_named():
    class Broken(Function):
        def forward(self, x):
            return x.sum()

        def backward(self, grad):
            return grad  # should be broadcast to the input's shape

    with pytest.raises(RuntimeError, match=r"Broken.backward returned a gradient of shape \(\)"):
        Broken()(leaf(1.0, 2.0)).backward()


def test_custom_function_from_the_docstring():
    class Square(Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, grad):
            return 2 * self.x * grad

    assert gradcheck(lambda t: Square()(t), leaf(0.5, -1.5, 2.0))


def test_cast_sends_gradients_back_in_the_input_dtype():
    x = leaf(1.0, 2.0, dtype=np.float32)
    y = x.double() * 3
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_gradcheck_of_a_composite_graph():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 5)), requires_grad=True)
    targets = np.array([0, 2, 1, 1])

    def model(x, w):
        h = F.linear(x, w).tanh()
        h = h + h[:, ::-1] * F.softmax(h, dim=0)
        return F.cross_entropy(h, targets, label_smoothing=0.1)

    assert gradcheck(model, x, w)
