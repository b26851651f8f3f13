"""Every differentiable operation passes a float64 gradient check; fused ops match NumPy."""

import numpy as np
import pytest

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Function, Tensor
from lmcore.gradcheck import gradcheck
from lmcore.rng import manual_seed

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")),
]


@pytest.fixture(params=DEVICES)
def xp(request):
    return backend.xp(request.param)


def rand(xp, *shape, low=None, seed=0, grad=True):
    """A float64 tensor of normal values (or uniform in [low, low + 1] when low is given)."""
    rng = np.random.default_rng(seed + 7 * len(shape) + sum(shape))
    data = rng.standard_normal(shape) if low is None else low + rng.random(shape)
    return Tensor(xp.asarray(data), requires_grad=grad)


def ints(xp, high, *shape, seed=0):
    return xp.asarray(np.random.default_rng(seed).integers(0, high, shape))


# Each case: name -> (function of the input tensors, builder of the inputs from xp).
CASES = {
    "add": (lambda a, b: a + b, lambda xp: (rand(xp, 3, 4), rand(xp, 3, 4, seed=1))),
    "add_broadcast": (lambda a, b: a + b, lambda xp: (rand(xp, 2, 1, 4), rand(xp, 3, 1))),
    "add_scalar": (lambda a: 2.0 + a, lambda xp: (rand(xp, 3),)),
    "sub_broadcast": (lambda a, b: a - b, lambda xp: (rand(xp, 3, 4), rand(xp, 3, 1))),
    "rsub_scalar": (lambda a: 1.5 - a, lambda xp: (rand(xp, 2, 3),)),
    "mul_broadcast": (lambda a, b: a * b, lambda xp: (rand(xp, 2, 3, 4), rand(xp, 3, 1))),
    "div_broadcast": (lambda a, b: a / b, lambda xp: (rand(xp, 3, 4), rand(xp, 4, low=0.5))),
    "rdiv_scalar": (lambda a: 1.0 / a, lambda xp: (rand(xp, 5, low=0.5),)),
    "pow_scalar": (lambda a: a**3.0, lambda xp: (rand(xp, 2, 3),)),
    "sqrt": (lambda a: a.sqrt(), lambda xp: (rand(xp, 2, 3, low=0.5),)),
    "pow_tensor": (lambda a, b: a**b, lambda xp: (rand(xp, 3, 4, low=0.5), rand(xp, 4))),
    "neg": (lambda a: -a, lambda xp: (rand(xp, 3, 2),)),
    "matmul": (lambda a, b: a @ b, lambda xp: (rand(xp, 3, 4), rand(xp, 4, 5))),
    "matmul_batched_weight": (lambda a, b: a @ b, lambda xp: (rand(xp, 2, 3, 4), rand(xp, 4, 5))),
    "matmul_batched": (lambda a, b: a @ b, lambda xp: (rand(xp, 2, 3, 4), rand(xp, 2, 4, 5))),
    "matmul_broadcast_batch": (
        lambda a, b: a @ b,
        lambda xp: (rand(xp, 2, 1, 3, 4), rand(xp, 3, 4, 2)),
    ),
    "matmul_vector_matrix": (lambda a, b: a @ b, lambda xp: (rand(xp, 4), rand(xp, 4, 5))),
    "matmul_matrix_vector": (lambda a, b: a @ b, lambda xp: (rand(xp, 2, 3, 4), rand(xp, 4))),
    "matmul_dot": (lambda a, b: a @ b, lambda xp: (rand(xp, 4), rand(xp, 4, seed=1))),
    "linear": (F.linear, lambda xp: (rand(xp, 2, 3, 4), rand(xp, 5, 4), rand(xp, 5))),
    "linear_no_bias": (F.linear, lambda xp: (rand(xp, 3, 4), rand(xp, 5, 4))),
    "sum_all": (lambda a: a.sum(), lambda xp: (rand(xp, 2, 3),)),
    "sum_dim": (lambda a: a.sum(dim=1), lambda xp: (rand(xp, 2, 3, 4),)),
    "sum_dims_keepdim": (
        lambda a: a.sum(dim=(0, 2), keepdim=True),
        lambda xp: (rand(xp, 2, 3, 4),),
    ),
    "mean_all": (lambda a: a.mean(), lambda xp: (rand(xp, 2, 3),)),
    "mean_dim": (lambda a: a.mean(dim=-1, keepdim=True), lambda xp: (rand(xp, 2, 3, 4),)),
    "max_all": (lambda a: a.max(), lambda xp: (rand(xp, 3, 4),)),
    "max_dim": (lambda a: a.max(dim=1), lambda xp: (rand(xp, 2, 3, 4),)),
    "max_keepdim": (lambda a: a.max(dim=-1, keepdim=True), lambda xp: (rand(xp, 3, 4),)),
    "min_dim": (lambda a: a.min(dim=0), lambda xp: (rand(xp, 3, 4),)),
    "reshape": (lambda a: a.reshape(4, -1), lambda xp: (rand(xp, 2, 3, 2),)),
    "view_tuple": (lambda a: a.view((3, 4)), lambda xp: (rand(xp, 2, 6),)),
    "flatten": (lambda a: a.flatten(1), lambda xp: (rand(xp, 2, 3, 2),)),
    "unsqueeze_squeeze": (lambda a: a.unsqueeze(1).squeeze(), lambda xp: (rand(xp, 2, 1, 3),)),
    "transpose": (lambda a: a.transpose(0, 2), lambda xp: (rand(xp, 2, 3, 4),)),
    "permute": (lambda a: a.permute(2, 0, 1), lambda xp: (rand(xp, 2, 3, 4),)),
    "T": (lambda a: a.T, lambda xp: (rand(xp, 3, 4),)),
    "getitem_int": (lambda a: a[1], lambda xp: (rand(xp, 3, 4),)),
    "getitem_slices": (lambda a: a[::-1, 1:3], lambda xp: (rand(xp, 3, 4),)),
    "getitem_none_ellipsis": (lambda a: a[None, ..., -1], lambda xp: (rand(xp, 2, 3, 4),)),
    "getitem_rows_repeated": (
        lambda a: a[np.array([0, 2, 0, 0])],
        lambda xp: (rand(xp, 3, 4),),
    ),
    "getitem_rows_many": (lambda a: a[np.arange(300) % 200], lambda xp: (rand(xp, 200, 2),)),
    "getitem_columns_list": (lambda a: a[:, [1, 1, 3]], lambda xp: (rand(xp, 3, 4),)),
    "getitem_pairs": (lambda a: a[[0, 1, 1], [2, 0, 2]], lambda xp: (rand(xp, 3, 4),)),
    "getitem_mask": (lambda a: a[a.numpy() > 0], lambda xp: (rand(xp, 3, 4),)),
    "embedding_small": (None, lambda xp: (rand(xp, 5, 3),)),
    "embedding_large": (None, lambda xp: (rand(xp, 300, 2),)),
    "cat": (lambda a, b: F.cat([a, b], dim=1), lambda xp: (rand(xp, 2, 3), rand(xp, 2, 1))),
    "stack": (
        lambda a, b: F.stack([a, b], dim=-1),
        lambda xp: (rand(xp, 2, 3), rand(xp, 2, 3, seed=1)),
    ),
    "split_size": (lambda a: F.split(a, 2, dim=1), lambda xp: (rand(xp, 2, 5),)),
    "split_sections": (lambda a: F.split(a, [1, 3], dim=0), lambda xp: (rand(xp, 4, 2),)),
    "split_one_used": (lambda a: F.split(a, 2)[1] * 2, lambda xp: (rand(xp, 6, 2),)),
    "exp": (lambda a: a.exp(), lambda xp: (rand(xp, 3, 4),)),
    "log": (lambda a: a.log(), lambda xp: (rand(xp, 3, 4, low=0.5),)),
    "tanh": (lambda a: a.tanh(), lambda xp: (rand(xp, 3, 4),)),
    "sigmoid": (lambda a: a.sigmoid(), lambda xp: (rand(xp, 3, 4),)),
    "relu": (lambda a: a.relu(), lambda xp: (rand(xp, 3, 4),)),
    "gelu": (lambda a: a.gelu(), lambda xp: (rand(xp, 3, 4),)),
    "softmax": (lambda a: a.softmax(dim=-1), lambda xp: (rand(xp, 2, 3, 5),)),
    "softmax_dim0": (lambda a: F.softmax(a, dim=0), lambda xp: (rand(xp, 4, 3),)),
    "log_softmax": (lambda a: a.log_softmax(dim=-1), lambda xp: (rand(xp, 2, 3, 5),)),
    "dropout": (None, lambda xp: (rand(xp, 4, 5),)),
    "where": (None, lambda xp: (rand(xp, 3, 4), rand(xp, 4))),
    "masked_fill": (None, lambda xp: (rand(xp, 3, 4),)),
    "cross_entropy_2d": (None, lambda xp: (rand(xp, 6, 5),)),
    "cross_entropy_3d_ignore": (None, lambda xp: (rand(xp, 2, 4, 5),)),
    "cross_entropy_smoothing_sum": (None, lambda xp: (rand(xp, 6, 5),)),
    "cross_entropy_none": (None, lambda xp: (rand(xp, 2, 3, 4),)),
    "layer_norm": (
        lambda x, w, b: F.layer_norm(x, (6,), w, b),
        lambda xp: (rand(xp, 2, 3, 6), rand(xp, 6), rand(xp, 6)),
    ),
    "layer_norm_plain_2dims": (lambda x: F.layer_norm(x, (3, 4)), lambda xp: (rand(xp, 2, 3, 4),)),
    "layer_norm_weight_only": (
        lambda x, w: F.layer_norm(x, 5, w, eps=1e-3),
        lambda xp: (rand(xp, 4, 5), rand(xp, 5)),
    ),
}


def fn_needing_xp(name, xp):
    """Cases whose function needs the array module (index arrays, generators, masks)."""
    if name == "embedding_small":
        idx = ints(xp, 5, 3, 4)
        return lambda w: F.embedding(idx, w)
    if name == "embedding_large":
        idx = ints(xp, 300, 500)
        return lambda w: F.embedding(Tensor(idx), w)
    if name == "dropout":
        return lambda a: F.dropout(a, 0.3, generator=xp.random.default_rng(0))
    if name == "where":
        cond = xp.asarray(np.random.default_rng(0).random((3, 4)) > 0.5)
        return lambda a, b: F.where(cond, a, b)
    if name == "masked_fill":
        mask = xp.asarray(np.triu(np.ones((3, 4), bool), k=1))
        return lambda a: a.masked_fill(mask, -5.0)
    if name == "cross_entropy_2d":
        targets = ints(xp, 5, 6)
        return lambda x: F.cross_entropy(x, targets)
    if name == "cross_entropy_3d_ignore":
        targets = ints(xp, 5, 2, 4)
        targets[0, 1] = targets[1, 3] = -100
        return lambda x: F.cross_entropy(x, targets)
    if name == "cross_entropy_smoothing_sum":
        targets = ints(xp, 5, 6)
        targets[2] = 7  # a custom ignore_index
        return lambda x: F.cross_entropy(
            x, targets, ignore_index=7, label_smoothing=0.2, reduction="sum"
        )
    if name == "cross_entropy_none":
        targets = ints(xp, 4, 2, 3)
        return lambda x: F.cross_entropy(x, targets, label_smoothing=0.1, reduction="none")
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name, xp):
    fn, make_inputs = CASES[name]
    if fn is None:
        fn = fn_needing_xp(name, xp)
    assert gradcheck(fn, *make_inputs(xp))


def test_gradcheck_reports_the_input_and_element():
    class WrongSquare(Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, grad):
            return grad * self.x  # should be 2 x

    with pytest.raises(AssertionError, match=r"input 0 \(shape \(3,\)\).*analytic .* numeric"):
        gradcheck(lambda t: WrongSquare()(t), rand(np, 3))


def test_gradcheck_checks_only_inputs_that_require_grad():
    a, b = rand(np, 3), rand(np, 3, grad=False)
    assert gradcheck(lambda x, y: x * y, a, b)
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda x: x * 2, b)


# ---------------------------------------------------------------------------
# Values, against direct NumPy computations


def numpy_cross_entropy(logits, targets, ignore_index=-100, smoothing=0.0, reduction="mean"):
    x = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    t = targets.reshape(-1)
    log_p = x - x.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    valid = t != ignore_index
    losses = np.zeros(len(t))
    for i in np.flatnonzero(valid):
        losses[i] = -(1 - smoothing) * log_p[i, t[i]] - smoothing * log_p[i].mean()
    if reduction == "none":
        return losses.reshape(targets.shape)
    return losses.sum() if reduction == "sum" else losses.sum() / valid.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_numpy(reduction, smoothing):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 5, 7)).astype(np.float32) * 3
    targets = rng.integers(0, 7, (3, 5))
    targets[0, :2] = -100
    loss = F.cross_entropy(Tensor(logits), targets, label_smoothing=smoothing, reduction=reduction)
    expected = numpy_cross_entropy(logits, targets, smoothing=smoothing, reduction=reduction)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    logits = Tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    targets = np.array([0, 2, 1, -100])
    F.cross_entropy(logits, targets).backward()
    probs = F.softmax(logits).numpy()
    expected = probs - np.eye(3)[np.maximum(targets, 0)]
    expected[3] = 0
    np.testing.assert_allclose(logits.grad, expected / 3, atol=1e-12)


def test_cross_entropy_errors_and_edge_cases():
    logits = Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    with pytest.raises(IndexError, match=r"\[0, 3\).*\[3\]"):
        F.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"targets of shape \(2,\)"):
        F.cross_entropy(logits, np.array([[0, 1]]))
    with pytest.raises(TypeError, match="integers"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    all_ignored = F.cross_entropy(logits, np.array([-100, -100]))
    assert np.isnan(all_ignored.item())
    F.cross_entropy(logits, np.array([-100, -100]), reduction="sum").backward()
    assert not logits.grad.numpy().any()


def test_cross_entropy_large_logits_stay_finite():
    logits = Tensor(np.array([[1e4, 0.0, -1e4]], np.float32), requires_grad=True)
    loss = F.cross_entropy(logits, np.array([1]))
    loss.backward()
    assert loss.item() == pytest.approx(1e4)
    assert np.isfinite(logits.grad.numpy()).all()


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_softmax_family_is_safe_for_large_and_masked_logits(op):
    x = Tensor(np.array([[1e4, 1e4 - 1, 0.0], [0.0, -np.inf, 2.0]], np.float32), requires_grad=True)
    y = op(x, dim=-1)
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y.masked_fill(~np.isfinite(y.numpy()), 0.0) * weights).sum().backward()
    probs = np.exp(y.numpy()) if op is F.log_softmax else y.numpy()
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-6)
    assert probs[1, 1] == 0
    assert np.isfinite(x.grad.numpy()).all()
    assert x.grad[1, 1] == 0


def test_softmax_and_log_softmax_agree():
    x = rand(np, 4, 6, grad=False)
    np.testing.assert_allclose(np.exp(F.log_softmax(x).numpy()), F.softmax(x).numpy())


def test_gelu_is_the_tanh_approximation():
    x = np.linspace(-4, 4, 9)
    c = np.sqrt(2 / np.pi)
    expected = 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(F.gelu(Tensor(x)).numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="tanh"):  # "none" (exact, erf) and "tanh" only
        F.gelu(Tensor(x), approximate="exact")


def test_sigmoid_does_not_overflow():
    with np.errstate(all="raise"):
        y = F.sigmoid(Tensor(np.array([-1000.0, 0.0, 1000.0]))).numpy()
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


def test_layer_norm_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (4, 5, 8)).astype(np.float32)
    w, b = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    y = F.layer_norm(Tensor(x), (8,), Tensor(w), Tensor(b), eps=1e-5).numpy()
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * w + b, rtol=1e-4, atol=1e-5)
    assert y.dtype == np.float32
    with pytest.raises(ValueError, match="ending in those dims"):
        F.layer_norm(Tensor(x), (5,))


@pytest.mark.parametrize("num_rows", [7, 1000])
def test_embedding_gradient_adds_repeated_rows(num_rows):
    rng = np.random.default_rng(0)
    weight = Tensor(rng.standard_normal((num_rows, 4)).astype(np.float32), requires_grad=True)
    idx = rng.integers(0, num_rows, (6, 50))
    out = F.embedding(idx, weight)
    assert out.shape == (6, 50, 4)
    upstream = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(upstream)
    expected = np.zeros((num_rows, 4), np.float32)
    np.add.at(expected, idx.ravel(), upstream.reshape(-1, 4))
    np.testing.assert_allclose(weight.grad, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="integers"):
        F.embedding(np.array([0.5]), weight)


def test_dropout_training_flag_scaling_and_seed():
    x = Tensor(np.ones((200, 100), np.float32), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 0.25, generator=np.random.default_rng(0)).numpy()
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    assert not F.dropout(x, 1.0).numpy().any()
    manual_seed(3)
    first = F.dropout(x, 0.5).numpy()
    manual_seed(3)
    np.testing.assert_array_equal(first, F.dropout(x, 0.5).numpy())
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)


def test_split_stack_cat_shapes():
    x = Tensor(np.arange(10.0).reshape(5, 2))
    assert [p.shape for p in F.split(x, 2)] == [(2, 2), (2, 2), (1, 2)]
    assert F.cat(F.split(x, [2, 3]), dim=0).numpy().tolist() == x.numpy().tolist()
    assert F.stack([x, x], dim=1).shape == (5, 2, 2)
    with pytest.raises(ValueError, match="add up to 4"):
        F.split(x, [1, 3])


def test_argmax_and_max_values():
    x = Tensor(np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]]), requires_grad=True)
    assert F.argmax(x, dim=1).numpy().tolist() == [1, 0]
    assert not F.argmax(x).requires_grad
    x.max(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [0.5, 0, 0.5]])  # ties share


def test_float32_stays_float32():
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = (x * 2 + 1.5) / 3 - x**2
    z = F.gelu(F.layer_norm(y, 3)).softmax().sum() + F.cross_entropy(y, np.array([0, 2]))
    assert z.dtype == np.float32
    z.backward()
    assert x.grad.dtype == np.float32
