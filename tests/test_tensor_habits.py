"""PyTorch habits on lmcore's Tensor: in-place updates where they are safe and a clear
error where they would corrupt a gradient, ``.grad`` as a Tensor, PyTorch's
size()/numel()/clone(), and the tensor factories (float32 on the active device by default)."""

import numpy as np
import pytest

import lmcore
from lmcore import nn
from lmcore.autograd import Tensor, no_grad


def test_the_manual_sgd_loop_moves_the_weights():
    lmcore.manual_seed(0)
    model = nn.Linear(3, 2)
    before = [p.data.copy() for p in model.parameters()]
    loss = model(Tensor(np.ones((4, 3), np.float32))).sum()
    loss.backward()
    with no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    for p, old in zip(model.parameters(), before):
        np.testing.assert_allclose(p.data, old - 0.1 * p.grad, rtol=1e-6)
        assert p.requires_grad and p.is_leaf  # still the same parameter


def test_in_place_on_a_parameter_while_recording_is_refused():
    w = nn.Parameter(np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match="no_grad"):
        w += 1
    with pytest.raises(RuntimeError, match="no_grad"):
        w.zero_()


def test_in_place_on_a_computed_tensor_is_refused():
    w = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = w * 2
    with pytest.raises(RuntimeError, match="computed by Mul"):
        y.add_(1)


def test_changing_a_saved_input_after_forward_fails_at_backward():
    x = Tensor(np.ones(3, np.float32))  # a constant the product keeps for its gradient
    w = Tensor(np.ones(3, np.float32), requires_grad=True)
    loss = (x * w).sum()
    x.mul_(5)  # allowed: x needs no gradient itself
    with pytest.raises(RuntimeError, match="changed in place after the forward pass"):
        loss.backward()


def test_in_place_methods():
    t = Tensor(np.array([1.0, -2.0, 3.0], np.float32))
    assert t.add_(1, alpha=2) is t and t.tolist() == [3.0, 0.0, 5.0]
    t.sub_(Tensor([1.0, 1.0, 1.0])).mul_(2).div_(4)
    assert t.tolist() == [1.0, -0.5, 2.0]
    t.clamp_(min=0, max=1.5)
    assert t.tolist() == [1.0, 0.0, 1.5]
    t.copy_(np.array([7.0, 8.0, 9.0]))  # float64 source, float32 kept
    assert t.dtype == np.float32 and t.tolist() == [7.0, 8.0, 9.0]
    t.copy_(2.0)
    assert t.tolist() == [2.0, 2.0, 2.0]
    t.fill_(4).zero_()
    assert t.tolist() == [0.0, 0.0, 0.0]
    t *= 3.5  # a Python number never changes the dtype
    assert t.dtype == np.float32


# -- .grad is a Tensor -------------------------------------------------------------------


def square_sum_grad(values, dtype=np.float32):
    """A parameter whose gradient is 2 * values."""
    p = nn.Parameter(np.array(values, dtype))
    (p * p).sum().backward()
    return p


def test_grad_is_a_tensor_of_the_parameters_shape_and_dtype():
    p = square_sum_grad([[1.0, 2.0], [3.0, 4.0]], np.float64)
    assert isinstance(p.grad, Tensor)
    assert p.grad.shape == (2, 2) and p.grad.dtype == np.float64 and p.grad.device == "cpu"
    assert not p.grad.requires_grad and p.grad.is_leaf
    assert p.grad.data is p._grad  # a wrapper, not a copy
    assert p.grad[1, 0].item() == 6.0
    np.testing.assert_array_equal(p.grad.numpy(), [[2.0, 4.0], [6.0, 8.0]])
    assert nn.Parameter(np.ones(2, np.float32)).grad is None


def test_grad_keeps_its_identity_while_the_gradient_array_is_the_same():
    p = square_sum_grad([1.0, 2.0])
    g = p.grad
    assert p.grad is g
    (p * p).sum().backward()  # accumulates into the same array
    assert p.grad is g
    np.testing.assert_array_equal(g.numpy(), [4.0, 8.0])
    p.grad = None
    assert p.grad is None
    (p * 3).sum().backward()  # a new array: a new wrapper, which then stays
    assert p.grad is not g and p.grad is p.grad


def test_grad_zero_clears_the_gradient_in_place():
    p = square_sum_grad([1.0, 2.0, 3.0])
    array = p._grad
    p.grad.zero_()
    assert p._grad is array
    np.testing.assert_array_equal(array, 0)
    (p * p).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), [2.0, 4.0, 6.0])  # added onto the zeros


def test_in_place_changes_of_grad_reach_the_parameters_gradient():
    p = square_sum_grad([1.0, 2.0])  # gradient [2, 4]
    p.grad.mul_(0.5)
    np.testing.assert_array_equal(p._grad, [1.0, 2.0])
    p.grad += Tensor([1.0, 1.0])
    np.testing.assert_array_equal(p._grad, [2.0, 3.0])
    p.grad.copy_(np.array([5.0, 6.0]))
    np.testing.assert_array_equal(p._grad, [5.0, 6.0])
    p.grad.data[...] = 0
    np.testing.assert_array_equal(p._grad, [0.0, 0.0])


def test_an_sgd_step_sees_what_was_done_to_grad():
    moves = []
    for scale in (1, 2):
        p = square_sum_grad([1.0, -2.0])  # gradient [2, -4]
        p.grad.mul_(scale)
        lmcore.optim.SGD([p], lr=0.1).step()
        moves.append(p.data - np.array([1.0, -2.0], np.float32))
    np.testing.assert_allclose(moves[0], [-0.2, 0.4], rtol=1e-6)
    np.testing.assert_allclose(moves[1], 2 * moves[0], rtol=1e-6)


def test_assigning_grad_checks_shape_and_dtype_and_shares_memory():
    p = nn.Parameter(np.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeError, match=r"different size.*\(3, 2\).*\(2, 3\)"):
        p.grad = Tensor(np.ones((3, 2), np.float32))
    with pytest.raises(RuntimeError, match="different type.*float64.*float32"):
        p.grad = np.ones((2, 3))
    with pytest.raises(TypeError, match="Tensor, an array or None"):
        p.grad = [[1.0] * 3] * 2
    assert p.grad is None  # nothing was stored
    g = Tensor(np.ones((2, 3), np.float32))
    p.grad = g
    assert p.grad is g and p._grad is g.data  # shared, as in PyTorch
    p.grad = np.full((2, 3), 2.0, np.float32)  # arrays too, for convenience
    np.testing.assert_array_equal(p.grad.numpy(), 2.0)


def test_numpy_reads_tensors_and_grads():
    p = square_sum_grad([1.0, 2.0])
    assert np.allclose(p.grad, [2.0, 4.0])
    assert not np.allclose(p.grad, [2.0, 5.0])
    np.testing.assert_allclose(p.grad, [2.0, 4.0])
    assert np.asarray(p.grad) is p._grad  # no copy on the CPU
    assert np.asarray(p.grad, dtype=np.float64).dtype == np.float64
    assert np.array(p.grad) is not p._grad
    assert (
        type(np.ones(2, np.float32) * p.grad) is Tensor
    )  # ndarray <op> Tensor still defers to Tensor


def test_module_zero_grad_and_to_keep_working_on_grads():
    model = nn.Linear(3, 2)
    model(Tensor(np.ones((1, 3), np.float32))).sum().backward()
    model.zero_grad(set_to_none=False)
    assert all(isinstance(p.grad, Tensor) and not p.grad.numpy().any() for p in model.parameters())
    model.to("float64")
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_the_classic_pytorch_loop_trains_a_linear_model():
    lmcore.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = Tensor(x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3)
    model, lr, losses = nn.Linear(3, 1), 0.1, []
    for _ in range(50):
        loss = lmcore.functional.mse_loss(model(Tensor(x)), y)
        loss.backward()
        with no_grad():
            for p in model.parameters():
                p -= lr * p.grad
                p.grad.zero_()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]
    assert all(not p.grad.numpy().any() for p in model.parameters())


def test_clone_has_its_own_memory_and_passes_gradients():
    x = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = x.clone()
    assert not np.shares_memory(x.data, y.data)
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


def test_size_is_numpys_int_and_pytorchs_call():
    t = lmcore.zeros(2, 3, 4)
    assert t.size == 24 and t.numel() == 24 and t.dim() == 3
    assert t.size() == (2, 3, 4) and t.size(0) == 2 and t.size(-1) == 4


def test_factories_default_to_float32_on_the_active_device():
    for t in (lmcore.zeros(2, 3), lmcore.ones((2, 3)), lmcore.empty(2, 3), lmcore.full((2, 3), 7)):
        assert t.shape == (2, 3) and t.dtype == np.float32 and t.device == lmcore.backend.device()
    assert lmcore.full((2,), 7).tolist() == [7.0, 7.0]
    assert lmcore.zeros(2, dtype="float64").dtype == np.float64
    assert lmcore.ones(2, requires_grad=True).requires_grad
    assert lmcore.tensor([1, 2]).dtype == np.int64 and lmcore.tensor([1.5]).dtype == np.float32
    assert lmcore.tensor(np.zeros(2)).dtype == np.float64  # arrays keep their dtype, as torch
    assert lmcore.arange(3).tolist() == [0, 1, 2] and lmcore.arange(3).dtype == np.int64
    assert lmcore.arange(0, 1, 0.5).tolist() == [0.0, 0.5]
    like = lmcore.zeros_like(lmcore.ones(2, 2, dtype="float64"))
    assert like.dtype == np.float64 and like.tolist() == [[0, 0], [0, 0]]
    assert lmcore.full_like(like, 3).tolist() == [[3, 3], [3, 3]]


def test_random_factories_follow_the_seed():
    lmcore.manual_seed(1)
    a = lmcore.randn(3, 4)
    lmcore.manual_seed(1)
    b = lmcore.randn(3, 4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.dtype == np.float32 and lmcore.rand(5).numpy().min() >= 0
    assert lmcore.randn_like(a).shape == (3, 4) and lmcore.rand_like(a).dtype == np.float32


def test_cat_and_stack_at_the_top_level():
    a, b = lmcore.ones(2, 3, requires_grad=True), lmcore.zeros(2, 3)
    assert lmcore.cat([a, b], dim=0).shape == (4, 3)
    assert lmcore.stack([a, b], dim=1).shape == (2, 2, 3)
    lmcore.cat([a, b], dim=1).sum().backward()
    np.testing.assert_allclose(a.grad, np.ones((2, 3)))


@pytest.mark.parametrize(
    "bad, hint", [(None, "NoneType"), (b"hi", "decode the bytes"), (["a"], "once per text")]
)
def test_tokenizers_name_what_they_take(bad, hint):
    from lmcore.tokenizers import CharTokenizer, WordTokenizer, gpt2

    for tokenizer in (gpt2(), CharTokenizer("abc"), WordTokenizer("a b c")):
        with pytest.raises(TypeError, match=f"takes a str, got .*{hint}"):
            tokenizer.encode(bad)


def test_import_is_light_and_changes_nothing():
    """``import lmcore`` loads no plotting, no training loop, and leaves malloc alone."""
    import subprocess
    import sys

    code = (
        "import sys, lmcore; from lmcore import memory; "
        "print(sorted(m for m in ('matplotlib', 'tqdm', 'lmcore.train', 'lmcore.notebook') "
        "if m in sys.modules), memory.configured)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] False"


def test_generate_names_an_empty_prompt_and_shares_one_loop():
    from lmcore import generate
    from lmcore.models import GPT, GPTConfig, RNNLanguageModel

    gpt = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    rnn = RNNLanguageModel(vocab_size=11, embed_dim=4, hidden_size=8, cell="lstm")
    for model in (gpt, rnn):
        with pytest.raises(ValueError, match="at least one token per row"):
            model.generate(np.zeros((2, 0), np.int64), 3)
        with pytest.raises(ValueError, match="temperature"):
            model.generate(np.zeros((1, 2), np.int64), 3, temperature=-1)
        out = model.generate(np.zeros((2, 3), np.int64), 4, seed=0)
        assert out.shape == (2, 7)
        assert np.array_equal(out, generate.generate(model, np.zeros((2, 3), np.int64), 4, seed=0))
        assert model.training  # the mode is restored
