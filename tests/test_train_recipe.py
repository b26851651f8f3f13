"""The pretraining recipe in the Trainer: gradient accumulation (the full batch's
gradient, exact resume), tokens and throughput in the history, Ctrl-C that leaves an
exactly resumable checkpoint, and model FLOPs per token for MFU."""

import math
import signal

import numpy as np
import pytest

from lmcore import data, manual_seed, optim
from lmcore.data.batches import RandomBlocks
from lmcore.models import GPT, GPTConfig
from lmcore.tokenizers import CharTokenizer
from lmcore.train import (
    Trainer,
    TrainingInterrupted,
    default_loss,
    gpt_flops_per_token,
    measure_peak_flops,
    mfu,
)


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


@pytest.fixture(scope="module")
def char_tokens():
    text = data.shakespeare("train")[:50_000]
    tokenizer = CharTokenizer(text)
    return tokenizer.vocab_size, np.array(tokenizer.encode(text))


def tiny_gpt(vocab_size, dtype="float32", dropout=0.0):
    manual_seed(0)
    config = GPTConfig(vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=dropout)
    return GPT(config, dtype=dtype)


def gradients_after_one_step(model, batches, accumulation_steps):
    trainer = Trainer(
        model,
        optim.SGD(model.parameters(), lr=0.0),
        batches,
        1,
        accumulation_steps=accumulation_steps,
        progress=False,
    )
    trainer.step(1)
    return {name: p.grad for name, p in model.named_parameters()}, trainer.history


def test_accumulated_micro_batches_give_the_full_batchs_gradient(char_tokens):
    vocab_size, ids = char_tokens
    x, y = next(RandomBlocks(ids, block_size=16, batch_size=8, seed=1))
    full, full_history = gradients_after_one_step(
        tiny_gpt(vocab_size, "float64"), [(x, y)], accumulation_steps=1
    )
    micro_batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)]
    accumulated, history = gradients_after_one_step(
        tiny_gpt(vocab_size, "float64"), micro_batches, accumulation_steps=4
    )
    for name, grad in full.items():
        np.testing.assert_allclose(accumulated[name], grad, rtol=1e-12, atol=1e-15, err_msg=name)
    assert history.train_loss[0] == pytest.approx(full_history.train_loss[0], rel=1e-14)
    assert history.tokens == full_history.tokens == [8 * 16]


def make_trainer(char_tokens, steps, accumulation_steps=2, **options):
    vocab_size, ids = char_tokens
    model = tiny_gpt(vocab_size, dropout=0.1)  # dropout: the RNG state must resume too
    optimizer = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=3e-3)
    scheduler = optim.LambdaLR(optimizer, optim.WarmupCosine(2, 8, min_factor=0.1))
    return Trainer(
        model,
        optimizer,
        RandomBlocks(ids, block_size=16, batch_size=4, seed=0),
        steps,
        scheduler=scheduler,
        clip=1.0,
        accumulation_steps=accumulation_steps,
        progress=False,
        **options,
    )


def test_a_run_with_accumulation_resumes_exactly(char_tokens, tmp_path):
    path = tmp_path / "run.safetensors"
    straight = make_trainer(char_tokens, 8)
    straight_history = straight.run()
    make_trainer(char_tokens, 3, checkpoint=path).run()
    resumed = make_trainer(char_tokens, 8, resume_from=path)
    history = resumed.run()
    assert history.train_loss == straight_history.train_loss
    assert history.step == list(range(1, 9))
    assert all(
        (a.data == b.data).all()
        for a, b in zip(resumed.model.parameters(), straight.model.parameters())
    )


def test_the_history_counts_tokens_and_throughput(char_tokens):
    history = make_trainer(char_tokens, 4, accumulation_steps=3, log_every=2).run()
    assert history.tokens == [3 * 4 * 16] * 4
    assert history.tokens_per_second() > 0 and history.tokens_per_second(last=2) > 0
    assert len(history.rows()) == 0 and math.isnan(type(history)().tokens_per_second())


def interrupting_at(call: int):
    """A loss function that sends SIGINT (what Ctrl-C sends) during its call-th call."""
    calls = []

    def loss_fn(model, x, y):
        calls.append(1)
        if len(calls) == call:
            signal.raise_signal(signal.SIGINT)
        return default_loss(model, x, y)

    return loss_fn


def test_ctrl_c_finishes_the_step_and_leaves_a_checkpoint_that_resumes_exactly(
    char_tokens, tmp_path
):
    straight = make_trainer(char_tokens, 8, eval_every=4).run()
    path = tmp_path / "run.safetensors"
    # The 7th micro-batch is the first half of step 4: the interrupt waits for the step.
    interrupted = make_trainer(
        char_tokens, 8, checkpoint=path, eval_every=4, loss_fn=interrupting_at(7)
    )
    with pytest.raises(TrainingInterrupted) as caught:
        interrupted.run()
    assert caught.value.step == 4 and caught.value.checkpoint == path
    assert isinstance(caught.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    resumed = make_trainer(char_tokens, 8, resume_from=path, eval_every=4).run()
    assert resumed.train_loss == straight.train_loss
    assert resumed.val_loss == straight.val_loss == []


def test_a_second_ctrl_c_stops_at_once(char_tokens, tmp_path):
    def twice(model, x, y):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        return default_loss(model, x, y)

    trainer = make_trainer(char_tokens, 8, checkpoint=tmp_path / "run.safetensors", loss_fn=twice)
    with pytest.raises(KeyboardInterrupt) as caught:
        trainer.run()
    assert not isinstance(caught.value, TrainingInterrupted)
    assert not (tmp_path / "run.safetensors").exists()


def analytic_parameter_count(c: GPTConfig) -> int:
    """GPT-2's block counted by hand: LayerNorms 2 x 2C, attention 3C^2 + 3C and C^2 + C,
    MLP 4C^2 + 4C and 4C^2 + C; plus the token embedding (tied to the output layer) and
    the final LayerNorm. Position embeddings are left out, as nanoGPT's count does."""
    C = c.n_embd
    return c.n_layer * (12 * C * C + 13 * C) + c.vocab_size * C + 2 * C


def matmul_flops_per_token(c: GPTConfig, T: int) -> int:
    """Training FLOPs of every matrix product per token, enumerated: forward 2 x (the
    weights of qkv, projection, MLP and output layer) + 2 x 2 T C for q k^T and the
    weighted values, backward twice the forward."""
    C = c.n_embd
    weights = c.n_layer * (3 * C * C + C * C + 8 * C * C) + C * c.vocab_size
    forward = 2 * weights + c.n_layer * 2 * 2 * T * C
    return 3 * forward


@pytest.mark.parametrize("shape", [(65, 256, 6, 6, 384), (50, 32, 2, 4, 64)])
def test_flops_per_token_is_6n_plus_the_attention_term(shape):
    vocab_size, block_size, n_layer, n_head, n_embd = shape
    config = GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd)
    model = GPT(config)
    N = analytic_parameter_count(config)
    assert model.num_parameters(non_embedding=True) == N
    assert gpt_flops_per_token(model) == 6 * N + 12 * n_layer * n_embd * block_size
    assert gpt_flops_per_token(model, seq_len=8) == 6 * N + 12 * n_layer * n_embd * 8
    # Beyond the matrix products, 6N counts 6 FLOPs for each bias and LayerNorm number.
    enumerated = matmul_flops_per_token(config, block_size)
    vectors = n_layer * 13 * n_embd + 2 * n_embd
    assert gpt_flops_per_token(model) - enumerated == 6 * vectors


def test_nanogpt_shakespeare_char_has_its_published_size():
    # nanoGPT prints "number of parameters: 10.65M" for config/train_shakespeare_char.py
    # (its train.py defaults to bias=False).
    model = GPT(GPTConfig(65, block_size=256, n_layer=6, n_head=6, n_embd=384, bias=False))
    assert round(model.num_parameters(non_embedding=True) / 1e6, 2) == 10.65


def test_mfu_and_a_measured_peak():
    assert mfu(2_000, 3e6, 12e9) == 0.5
    with pytest.raises(ValueError, match="peak_flops"):
        mfu(1, 1, 0)
    peak = measure_peak_flops("cpu", size=64, repeats=1)
    assert math.isfinite(peak) and peak > 0
