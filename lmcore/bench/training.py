"""Training-step benchmark: lmcore on NumPy beside PyTorch eager on the CPU.

One step is forward, loss, backward, AdamW step and zero_grad, in float32, for two
models with the same weights, batches, hyperparameters and thread count in both
libraries:

* ``mlp``: the MLP language model of chapter 3 (V=76, context 8, embeddings of 24,
  hidden 256) on batches of 256 windows, one predicted token per window;
* ``stack``: a GPT-shaped stack without attention, token embedding (V=76, width 128)
  then 4 x [LayerNorm -> Linear(128, 512) -> GELU(tanh) -> Linear(512, 128) +
  residual], LayerNorm, Linear(128, V), on (B=12, T=64) tokens with cross-entropy at
  every position.

The two libraries take turns (a few lmcore steps, the same number of torch steps,
round after round, the order swapped each round) so that both see the same machine
load; each figure is the median over rounds. Without torch, lmcore runs alone.

Example:
    $ lmcore bench training
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from lmcore import functional as F
from lmcore import nn, optim
from lmcore.bench.common import print_table, race, speed_columns, thread_limit
from lmcore.models import MLPLanguageModel
from lmcore.rng import manual_seed

VOCAB = 76
LR, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.95), 0.1


class MLPStack(nn.Module):
    """Embedding -> blocks of [LayerNorm -> Linear -> GELU -> Linear + residual] -> head.

    Example:
        >>> MLPStack(vocab_size=10, width=8, layers=1)(np.zeros((2, 3), np.int64)).shape
        (2, 3, 10)
    """

    def __init__(self, vocab_size: int = VOCAB, width: int = 128, layers: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, idx):  # (B, T) int -> (B, T, V)
        x = self.embedding(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        return x + self.down(F.gelu(self.up(self.norm(x))))


def _torch_models(torch):
    """The two models in torch.nn, with the parameter names of the lmcore ones."""
    tnn = torch.nn

    class TorchBlock(tnn.Module):
        def __init__(self, width):
            super().__init__()
            self.norm = tnn.LayerNorm(width)
            self.up = tnn.Linear(width, 4 * width)
            self.down = tnn.Linear(4 * width, width)

        def forward(self, x):
            return x + self.down(tnn.functional.gelu(self.up(self.norm(x)), approximate="tanh"))

    class TorchStack(tnn.Module):
        def __init__(self, vocab_size=VOCAB, width=128, layers=4):
            super().__init__()
            self.embedding = tnn.Embedding(vocab_size, width)
            self.blocks = tnn.ModuleList(TorchBlock(width) for _ in range(layers))
            self.norm = tnn.LayerNorm(width)
            self.head = tnn.Linear(width, vocab_size)

        def forward(self, idx):
            x = self.embedding(idx)
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    class TorchMLP(tnn.Module):
        def __init__(self, vocab_size, context, embed_dim, hidden):
            super().__init__()
            self.embedding = tnn.Embedding(vocab_size, embed_dim)
            self.hidden = tnn.Linear(context * embed_dim, hidden)
            self.output = tnn.Linear(hidden, vocab_size)

        def forward(self, idx):
            x = self.embedding(idx).flatten(1)
            return self.output(torch.tanh(self.hidden(x)))

    return TorchMLP, TorchStack


def _cases():
    """(name, tokens per step, lmcore model, torch class and arguments, batches) per model."""
    rng = np.random.default_rng(0)
    mlp_args = dict(vocab_size=VOCAB, context=8, embed_dim=24, hidden=256)
    mlp_batches = [
        (rng.integers(0, VOCAB, (256, 8)), rng.integers(0, VOCAB, 256)) for _ in range(4)
    ]
    stack_batches = [
        (rng.integers(0, VOCAB, (12, 64)), rng.integers(0, VOCAB, (12, 64))) for _ in range(4)
    ]
    manual_seed(0)
    return [  # on the CPU even where a GPU is present: this compares CPU training
        ("MLP LM, batch 256, context 8", 256, MLPLanguageModel(**mlp_args).to("cpu"), 0, mlp_args, mlp_batches),
        ("GPT-shaped MLP stack, 12 x 64", 12 * 64, MLPStack().to("cpu"), 1, {}, stack_batches),
    ]  # fmt: skip


def _lmcore_step(model, optimizer):
    def step(batch):
        idx, targets = batch
        logits = model(idx)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    return step


def _torch_step(torch, model, optimizer):
    def step(batch):
        idx, targets = (torch.from_numpy(a) for a in batch)
        logits = model(idx)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, -2), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def run(quick: bool = False) -> list[dict]:
    """Time training steps of both models in both libraries, print a table, return its rows."""
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rounds, steps, warmup = (2, 1, 1) if quick else (9, 5, 5)
    rows = []
    with thread_limit(threads, torch):
        for name, tokens, model, torch_index, torch_args, batches in _cases():
            optimizer = optim.AdamW(
                model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY
            )
            runners = {"lmcore": _lmcore_step(model, optimizer)}
            if torch:
                reference = _torch_models(torch)[torch_index](**torch_args)
                reference.load_state_dict(
                    {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
                )
                runners["torch"] = _torch_step(
                    torch,
                    reference,
                    torch.optim.AdamW(
                        reference.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY
                    ),
                )
            first_loss = {lib: step(batches[0]) for lib, step in runners.items()}
            medians = race(
                {lib: (step, batches) for lib, step in runners.items()}, rounds, steps, warmup
            )
            row = {
                "model": name,
                "tokens/step": tokens,
                **speed_columns(medians, tokens, first_loss),
            }
            rows.append(row)
    versions = f"torch {torch.__version__}" if torch else "torch not found: lmcore only"
    print_table(
        rows,
        title=f"training step (forward, loss, backward, AdamW, zero_grad), float32, "
        f"{threads} threads, median of {rounds} alternating rounds of {steps} steps; {versions}",
    )
    return rows
