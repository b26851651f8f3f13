"""Mixed precision on the CPU with NumPy float16: the loss scaler against PyTorch's, the
float32 accumulation of the reducing ops, and a tiny GPT trained in float16 against
the same run in float32."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lmcore import data, manual_seed, optim
from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.data.batches import RandomBlocks
from lmcore.models import GPT, GPTConfig
from lmcore.nn import Parameter
from lmcore.tokenizers import CharTokenizer
from lmcore.train import GradScaler, MixedPrecision, Trainer

SNAPSHOT = Path(__file__).parent / "data" / "grad_scaler_torch.json"


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


# -- the scaler against torch.amp.GradScaler ------------------------------------------------


def replay(settings: dict, gradients: list) -> dict:
    """lmcore's run of tests/data/make_grad_scaler_snapshot.py's steps."""
    weight = Parameter(np.ones(4, np.float32))
    optimizer = optim.SGD([weight], lr=0.5)
    scaler = GradScaler(**settings)
    scales, weights = [], []
    for row in gradients:
        optimizer.zero_grad()
        loss = (weight * Tensor(np.array([float(g) for g in row], np.float32))).sum()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scales.append(scaler.get_scale())
        weights.append(weight.data.tolist())
    return {"scales": scales, "weights": weights, "state_dict": scaler.state_dict()}


def check_against(expected: dict) -> None:
    ours = replay(expected["settings"], expected["gradients"])
    assert ours["scales"] == expected["scales"]  # float32 scales, bit for bit
    assert ours["state_dict"] == expected["state_dict"]
    np.testing.assert_allclose(ours["weights"], expected["weights"], rtol=1e-6)
    skipped = [
        i
        for i, row in enumerate(expected["gradients"])
        if not all(map(math.isfinite, map(float, row)))
    ]
    assert skipped == [1, 2, 7]
    for i in skipped:  # the weights did not move on a step with inf or NaN gradients
        assert ours["weights"][i] == ours["weights"][i - 1]


def test_the_scaler_matches_pytorchs_snapshot():
    check_against(json.loads(SNAPSHOT.read_text()))


def test_the_scaler_matches_pytorch_live():
    pytest.importorskip("torch")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_grad_scaler_snapshot", SNAPSHOT.parent / "make_grad_scaler_snapshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check_against(json.loads(json.dumps(module.run())))  # through JSON, as the snapshot


def test_the_scaler_skips_a_step_with_an_inf_gradient_and_backs_off():
    w = Parameter(np.array([1.0, 2.0], np.float32))
    optimizer, scaler = optim.SGD([w], lr=0.1), GradScaler(init_scale=256.0, growth_interval=2)
    w.grad = np.array([np.inf, 256.0], np.float32)
    scaler.step(optimizer)
    scaler.update()
    assert w.data.tolist() == [1.0, 2.0] and scaler.get_scale() == 128.0
    for expected_scale in (128.0, 256.0):  # two clean steps: the scale grows again
        w.grad = np.array([128.0, 128.0], np.float32)
        scaler.step(optimizer)
        scaler.update()
        assert scaler.get_scale() == expected_scale
    np.testing.assert_allclose(w.data, [0.8, 1.8], rtol=1e-6)  # two steps of 0.1 * 1


def test_the_scaler_refuses_misuse_as_pytorchs_does():
    w = Parameter(np.ones(2, np.float32))
    optimizer, scaler = optim.SGD([w], lr=0.1), GradScaler()
    w.grad = np.ones(2, np.float32)
    scaler.unscale_(optimizer)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(optimizer)
    scaler.step(optimizer)
    with pytest.raises(RuntimeError, match="already been called since the last update"):
        scaler.step(optimizer)
    scaler.update()
    with pytest.raises(RuntimeError, match="No inf checks"):
        scaler.update()
    w16 = Parameter(np.ones(2, np.float16))  # a float16 model, as after model.half()
    w16.grad = np.ones(2, np.float16)
    with pytest.raises(ValueError, match="FP16 gradients"):
        scaler.unscale_(optim.SGD([w16], lr=0.1))
    with pytest.raises(RuntimeError, match="empty"):
        GradScaler().load_state_dict(GradScaler(enabled=False).state_dict())


def test_a_disabled_scaler_passes_everything_through():
    w = Parameter(np.ones(2, np.float32))
    optimizer, scaler = optim.SGD([w], lr=0.5), GradScaler(enabled=False)
    loss = (w * 2.0).sum()
    assert scaler.scale(loss) is loss and scaler.get_scale() == 1.0
    loss.backward()
    scaler.step(optimizer)
    scaler.update()
    assert w.data.tolist() == [0.0, 0.0] and scaler.state_dict() == {}


# -- float16 inputs, float32 sums --------------------------------------------------------------


def half_and_wide(array):
    """The float16 input, and the same numbers in float64 for the reference."""
    half = array.astype(np.float16)
    return half, half.astype(np.float64)


def test_cross_entropy_of_float16_logits_sums_in_float32_and_returns_a_float32_loss():
    # 70,000 equal logits: the sum of their exponentials, 70,000, is past float16's
    # largest number (65,504); summed in float16 the loss would be -inf.
    logits, wide = half_and_wide(np.zeros((3, 70_000)))
    logits[:, 5] = 2.0
    wide[:, 5] = 2.0
    targets = np.array([5, 0, 69_999])
    x = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, targets)
    assert loss.dtype == np.float32
    reference = F.cross_entropy(Tensor(wide, requires_grad=True), targets)
    np.testing.assert_allclose(loss.item(), reference.item(), rtol=1e-6)
    loss.backward()
    assert x.grad.dtype == np.float16
    xr = Tensor(wide, requires_grad=True)
    F.cross_entropy(xr, targets).backward()
    # float16's rounding, and its spacing of 6e-8 among the tiny (subnormal) gradients
    np.testing.assert_allclose(x.grad.numpy().astype(np.float64), xr.grad, rtol=1e-3, atol=6e-8)


def test_layer_norm_of_float16_sums_in_float32():
    # 4,096 features around 100: their float16 sum (409,600) would overflow to inf.
    rng = np.random.default_rng(0)
    x16, x64 = half_and_wide(rng.normal(100.0, 0.5, (4, 4096)))
    w16, w64 = half_and_wide(rng.normal(1.0, 0.1, 4096))
    b16, b64 = half_and_wide(rng.normal(0.0, 0.1, 4096))
    inputs16 = [Tensor(a, requires_grad=True) for a in (x16, w16, b16)]
    inputs64 = [Tensor(a, requires_grad=True) for a in (x64, w64, b64)]
    y16 = F.layer_norm(inputs16[0], (4096,), inputs16[1], inputs16[2])
    y64 = F.layer_norm(inputs64[0], (4096,), inputs64[1], inputs64[2])
    assert y16.dtype == np.float16
    np.testing.assert_allclose(y16.numpy().astype(np.float64), y64.numpy(), rtol=2e-3, atol=2e-3)
    upstream = rng.normal(size=(4, 4096))
    y16.backward(upstream.astype(np.float16))
    y64.backward(upstream.astype(np.float16).astype(np.float64))
    for a, b in zip(inputs16, inputs64):
        assert a.grad.dtype == np.float16
        scale = np.abs(b.grad.numpy()).max()
        assert np.abs(a.grad.numpy().astype(np.float64) - b.grad.numpy()).max() < 2e-3 * scale


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_softmax_of_float16_sums_in_float32(op):
    x16, x64 = half_and_wide(np.zeros((2, 70_000)))
    y16, y64 = op(Tensor(x16)), op(Tensor(x64))
    assert y16.dtype == np.float16 and np.isfinite(y16.numpy()).all()
    np.testing.assert_allclose(y16.numpy().astype(np.float64), y64.numpy(), rtol=1e-3, atol=6e-8)


def test_attention_in_float16_matches_float64():
    rng = np.random.default_rng(1)
    arrays = [half_and_wide(rng.normal(size=(2, 2, 16, 8))) for _ in range(3)]
    half = [Tensor(a, requires_grad=True) for a, _ in arrays]
    wide = [Tensor(b, requires_grad=True) for _, b in arrays]
    out16 = F.scaled_dot_product_attention(*half, causal=True)
    out64 = F.scaled_dot_product_attention(*wide, causal=True)
    assert out16.dtype == np.float16
    np.testing.assert_allclose(out16.numpy().astype(np.float64), out64.numpy(), atol=5e-3)
    out16.sum().backward()
    out64.sum().backward()
    for a, b in zip(half, wide):
        assert a.grad.dtype == np.float16
        np.testing.assert_allclose(a.grad.numpy().astype(np.float64), b.grad, atol=2e-2)


# -- float16 copies of float32 weights ---------------------------------------------------------


def tiny_gpt(vocab_size=20, seed=0):
    manual_seed(seed)
    return GPT(GPTConfig(vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))


def test_autocast_computes_in_float16_and_sums_gradients_in_float32():
    model = tiny_gpt()
    idx = np.arange(32).reshape(2, 16) % 20
    precision = MixedPrecision(model)
    masters = {name: p.data for name, p in model.named_parameters()}
    with precision.autocast():
        assert all(p.dtype == np.float16 for p in model.parameters())
        for half in (idx[:1], idx[1:]):  # two micro-batches
            logits, loss = model(half, half)
            assert logits.dtype == np.float16 and loss.dtype == np.float32
            (loss / 2).backward()
            precision.accumulate_grads()
        with pytest.raises(RuntimeError, match="already active"), precision.autocast():
            pass
    for name, p in model.named_parameters():
        assert p.data is masters[name] and p.grad.dtype == np.float32
    half_grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
    model.zero_grad()
    _, loss = model(idx, idx)  # the same gradient in float32, from the whole batch
    loss.backward()
    for name, p in model.named_parameters():
        scale = np.abs(p.grad.numpy()).max() + 1e-6
        assert np.abs(half_grads[name] - p.grad.numpy()).max() < 0.02 * scale, name


def test_a_float16_model_is_refused_as_master_weights():
    with pytest.raises(ValueError, match="keep the model in float32"):
        MixedPrecision(tiny_gpt().to("float16"))
    with pytest.raises(ValueError, match="bfloat16"):
        MixedPrecision(tiny_gpt(), dtype="float64")


@pytest.fixture(scope="module")
def char_tokens():
    text = data.shakespeare("train")[:60_000]
    tokenizer = CharTokenizer(text)
    return tokenizer.vocab_size, np.array(tokenizer.encode(text))


def trainer_for(char_tokens, steps, **options):
    vocab_size, ids = char_tokens
    manual_seed(0)
    model = GPT(GPTConfig(vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32))
    optimizer = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=3e-3)
    batches = RandomBlocks(ids, block_size=32, batch_size=8, seed=0)
    return Trainer(model, optimizer, batches, steps, clip=1.0, progress=False, **options)


def test_a_float16_run_tracks_the_float32_run(char_tokens):
    full = np.array(trainer_for(char_tokens, 30).run().train_loss)
    mixed_run = trainer_for(char_tokens, 30, mixed_precision=True)
    mixed = np.array(mixed_run.run().train_loss)
    assert not np.array_equal(mixed, full)  # it did compute in float16
    assert np.abs(mixed - full).mean() < 0.005 and np.abs(mixed - full).max() < 0.05
    assert full[-1] < full[0] - 0.5 and mixed[-1] < mixed[0] - 0.5
    assert mixed_run.scaler.get_scale() == 2.0**16  # no overflow at this size


def test_the_trainer_skips_overflowing_steps_and_leaves_the_weights_alone(char_tokens):
    trainer = trainer_for(char_tokens, 30, mixed_precision=True, scaler=GradScaler(2.0**40))
    skipped = 0
    for step in range(1, 31):
        before = [p.data.copy() for p in trainer.model.parameters()]
        trainer.step(step)
        if not math.isfinite(trainer.history.grad_norm[-1]):  # inf, or NaN from inf - inf
            skipped += 1
            assert all((p.data == b).all() for p, b in zip(trainer.model.parameters(), before))
        else:
            assert any((p.data != b).any() for p, b in zip(trainer.model.parameters(), before))
    assert 1 <= skipped < 30
    assert trainer.scaler.get_scale() == 2.0**40 * 0.5**skipped
    assert all(math.isfinite(loss) for loss in trainer.history.train_loss)


def test_a_mixed_precision_run_resumes_exactly(char_tokens, tmp_path):
    path = tmp_path / "run.safetensors"
    straight = trainer_for(char_tokens, 8, mixed_precision=True, scaler=GradScaler(2.0**22))
    straight_losses = straight.run().train_loss
    first = trainer_for(
        char_tokens, 4, mixed_precision=True, scaler=GradScaler(2.0**22), checkpoint=path
    )
    first.run()
    resumed = trainer_for(
        char_tokens, 8, mixed_precision=True, scaler=GradScaler(2.0**22), resume_from=path
    )
    assert resumed.scaler.get_scale() == first.scaler.get_scale()
    assert resumed.run().train_loss == straight_losses
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
