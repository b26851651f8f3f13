"""Mixed precision on the GPU: a small character GPT trained for a few hundred steps in
float32 and in float16 (float32 master weights, dynamic loss scaling) from the same seed
reaches the same validation loss, within 0.02 nats. Skipped where no GPU is present."""

import itertools

import numpy as np
import pytest

from lmcore import backend, data, manual_seed, optim
from lmcore.data.batches import RandomBlocks
from lmcore.models import GPT, GPTConfig
from lmcore.tokenizers import CharTokenizer
from lmcore.train import Trainer

pytestmark = pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")

STEPS = 400
BLOCK, BATCH = 128, 32


@pytest.fixture
def on_gpu(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cuda")


def train_char_gpt(mixed_precision: bool):
    """Validation losses of a 4-layer, width-128 character GPT, and its trainer."""
    train_text, val_text = data.shakespeare("train"), data.shakespeare("val")
    tokenizer = CharTokenizer(train_text + val_text)
    train_ids = np.array(tokenizer.encode(train_text))
    val_ids = np.array(tokenizer.encode(val_text))
    manual_seed(0)
    config = GPTConfig(tokenizer.vocab_size, BLOCK, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config, device="cuda")
    optimizer = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    scheduler = optim.LambdaLR(optimizer, optim.WarmupCosine(40, STEPS, min_factor=0.1))
    val = list(itertools.islice(RandomBlocks(val_ids, BLOCK, BATCH, seed=1), 20))
    trainer = Trainer(
        model,
        optimizer,
        RandomBlocks(train_ids, BLOCK, BATCH, seed=0),
        STEPS,
        scheduler=scheduler,
        clip=1.0,
        val_batches=val,
        eval_every=100,
        log_every=25,
        progress=False,
        mixed_precision=mixed_precision,
    )
    return trainer.run().val_loss, trainer


def test_float16_mixed_precision_reaches_the_float32_validation_loss(on_gpu):
    full, _ = train_char_gpt(mixed_precision=False)
    mixed, trainer = train_char_gpt(mixed_precision=True)
    assert backend.device_of(trainer.model.wte.weight.data) == "cuda"
    assert trainer.model.wte.weight.dtype == np.float32  # the master weights
    assert full[-1] < full[0] - 1.0  # it learned: from about log(76) = 4.3 nats
    assert abs(mixed[-1] - full[-1]) < 0.02, (full, mixed)
    assert 1.0 <= trainer.scaler.get_scale() <= 2.0**16
