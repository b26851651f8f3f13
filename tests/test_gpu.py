"""The models on CuPy compute what they compute on NumPy: outputs and gradients of each
model, moved to the GPU, match the CPU run. Skipped where no GPU is present."""

import numpy as np
import pytest

from lmcore import backend, rng
from lmcore.autograd import Tensor
from lmcore.functional import scaled_dot_product_attention
from lmcore.gradcheck import gradcheck
from lmcore.models import GPT, GPTConfig, MLPLanguageModel, RNNLanguageModel

pytestmark = pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")


def step(model, idx, targets):
    """Loss and parameter gradients (as NumPy) of one forward and backward pass."""
    model.zero_grad()
    out = model(idx, targets=targets)
    loss = out[1]
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
    return float(loss.item()), grads


def make_batch(vocab, shape, device):
    g = np.random.default_rng(0)
    idx, targets = g.integers(0, vocab, shape), g.integers(0, vocab, shape)
    return backend.to_device(idx, device), backend.to_device(targets, device)


@pytest.mark.parametrize(
    "build, shape, target_shape",
    [
        (lambda: GPT(GPTConfig(50, 16, 2, 2, 32), dtype="float64"), (3, 16), (3, 16)),
        (
            lambda: GPT(GPTConfig(50, 16, 2, 2, 32, positional="rotary"), dtype="float64"),
            (3, 16),
            (3, 16),
        ),
        (
            lambda: RNNLanguageModel(50, 16, 32, num_layers=2, cell="lstm").to("float64"),
            (3, 12),
            (3, 12),
        ),
        (lambda: RNNLanguageModel(50, 16, 32, cell="gru").to("float64"), (3, 12), (3, 12)),
        (lambda: MLPLanguageModel(50, 4, 8, 32).to("float64"), (6, 4), (6,)),
    ],
    ids=["gpt", "gpt-rotary", "lstm", "gru", "mlp"],
)
def test_model_matches_its_cpu_run(build, shape, target_shape):
    rng.manual_seed(0)
    model = build()
    idx, targets = make_batch(50, shape, "cpu")
    targets = targets.reshape(-1)[: int(np.prod(target_shape))].reshape(target_shape)
    cpu_loss, cpu_grads = step(model, idx, targets)
    model.to("cuda")
    gpu_loss, gpu_grads = step(
        model, backend.to_device(idx, "cuda"), backend.to_device(targets, "cuda")
    )
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-9)
    for name, grad in cpu_grads.items():
        np.testing.assert_allclose(gpu_grads[name], grad, rtol=1e-7, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_gradcheck_on_the_gpu(causal):
    cp = backend.xp("cuda")
    g = cp.random.default_rng(0)
    q, k, v = (Tensor(g.standard_normal((2, 2, 5, 4)), requires_grad=True) for _ in range(3))
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal), q, k, v)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_generation_with_the_kv_cache_on_the_gpu(dtype, positional):
    """On CuPy too, the KV cache gives the tokens recomputation gives (greedy, seeded
    sampling with top-p, beam search), prompts past the block included."""
    from lmcore.generate import generate

    rng.manual_seed(0)
    model = GPT(GPTConfig(50, 12, 2, 2, 32, positional=positional), device="cuda", dtype=dtype)
    prompt = backend.to_device(np.random.default_rng(1).integers(0, 50, (2, 5)), "cuda")
    for options in (
        {"temperature": 0},
        {"temperature": 0.9, "top_p": 0.8, "seed": 3},
        {"num_beams": 3, "temperature": 0},
    ):
        cached = generate(model, prompt, 15, use_cache=True, **options)
        recomputed = generate(model, prompt, 15, use_cache=False, **options)
        np.testing.assert_array_equal(cached.get(), recomputed.get(), err_msg=str(options))
