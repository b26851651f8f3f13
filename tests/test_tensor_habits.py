"""PyTorch habits on lmcore's Tensor: in-place updates where they are safe and a clear
error where they would corrupt a gradient, PyTorch's size()/numel()/clone(), and the
tensor factories (float32 on the active device by default)."""

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
