"""LSTM language-model training step: lmcore on NumPy beside PyTorch's ``nn.LSTM`` on the CPU.

One step is forward, loss, backward, AdamW step and zero_grad, in float32, for a
character-level model (V=76): embedding (width 128) → LSTM (hidden 256, 1 or 2 layers)
→ Linear(256, V), on (B=32, T=64) tokens with cross-entropy at every position. Both
libraries get the same weights, batches, hyperparameters and thread count, and run the
model time-major, as cuDNN-style LSTMs prefer. The two compute the same function by
different routes where the model allows it: torch runs oneDNN's fused LSTM layer, and
lmcore projects each of the 76 symbols' embeddings once for the first layer
(:func:`lmcore.functional.embedding_linear`) instead of the 2,048 embedded positions.

The libraries take turns (a few lmcore steps, the same number of torch steps, round
after round, the order swapped each round) so that both see the same machine load; each
figure is the median over rounds. Without torch, lmcore runs alone.

Example:
    $ lmcore bench lstm
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from lmcore import optim
from lmcore.bench.common import print_table, race, speed_columns, thread_limit
from lmcore.models.rnn import RNNLanguageModel
from lmcore.rng import manual_seed

VOCAB, EMBED, HIDDEN, BATCH, STEPS = 76, 128, 256, 32, 64
LR, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.95), 0.1


def _torch_model(torch, num_layers: int):
    """The same model in torch.nn, with the parameter names of the lmcore one."""
    tnn = torch.nn

    class TorchLSTMLanguageModel(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = tnn.Embedding(VOCAB, EMBED)
            self.rnn = tnn.LSTM(EMBED, HIDDEN, num_layers)
            self.head = tnn.Linear(HIDDEN, VOCAB)

        def forward(self, idx):  # (B, T) -> (T, B, V)
            x, _ = self.rnn(self.embedding(idx.t()))
            return self.head(x)

    return TorchLSTMLanguageModel()


def _lmcore_step(model, optimizer):
    def step(batch):
        _, loss, _ = model(*batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    return step


def _torch_step(torch, model, optimizer):
    def step(batch):
        idx, targets = (torch.from_numpy(a) for a in batch)
        logits = model(idx)  # (T, B, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.t().flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def _adamw(parameters, library):
    return library.AdamW(parameters, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)


def run(quick: bool = False) -> list[dict]:
    """Time LSTM language-model training steps in both libraries, print a table, return its rows."""
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rounds, steps, warmup = (2, 1, 1) if quick else (9, 3, 3)
    rng = np.random.default_rng(0)
    batches = [
        (rng.integers(0, VOCAB, (BATCH, STEPS)), rng.integers(0, VOCAB, (BATCH, STEPS)))
        for _ in range(4)
    ]
    tokens = BATCH * STEPS
    rows = []
    with thread_limit(threads, torch):
        for num_layers in (1, 2):
            manual_seed(0)
            model = RNNLanguageModel(VOCAB, EMBED, HIDDEN, num_layers, cell="lstm")
            runners = {"lmcore": _lmcore_step(model, _adamw(model.parameters(), optim))}
            if torch:
                reference = _torch_model(torch, num_layers)
                reference.load_state_dict(
                    {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
                )
                optimizer = _adamw(reference.parameters(), torch.optim)
                runners["torch"] = _torch_step(torch, reference, optimizer)
            first_loss = {lib: step(batches[0]) for lib, step in runners.items()}
            medians = race(
                {lib: (step, batches) for lib, step in runners.items()}, rounds, steps, warmup
            )
            row = {
                "model": f"LSTM LM, {num_layers} layer(s), {BATCH} x {STEPS}",
                **speed_columns(medians, tokens, first_loss),
            }
            rows.append(row)
    versions = f"torch {torch.__version__}" if torch else "torch not found: lmcore only"
    print_table(
        rows,
        title=f"LSTM LM training step (embedding {EMBED}, hidden {HIDDEN}, V={VOCAB}; forward, "
        f"loss, backward, AdamW, zero_grad), float32, {threads} threads, median of {rounds} "
        f"alternating rounds of {steps} steps; {versions}",
    )
    return rows
