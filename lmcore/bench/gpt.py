"""GPT training step: lmcore beside PyTorch eager, on the CPU and, where present, on a GPU.

One step is forward, loss, backward, AdamW step and zero_grad, in float32, for the same
GPT in both libraries: GPT-2's structure (pre-norm blocks, GELU in its tanh form, learned
positions, the output projection tied to the token embedding, biases), the same
weights, batches, hyperparameters (nanoGPT's: AdamW, lr 1e-3, betas (0.9, 0.99), weight
decay 0.1 on matrices only) and thread count in both.

* CPU: nanoGPT's CPU configuration for character-level Shakespeare, 4 layers, 4 heads,
  width 128, context 64, batch 12, vocabulary 65, no dropout.
* GPU (CuPy present): nanoGPT's Shakespeare configuration, 6 layers, 6 heads, width
  384, context 256, batch 64, against torch on CUDA when torch sees the GPU (TF32
  matrix products allowed in torch, as nanoGPT runs it).

The two libraries take turns (a few lmcore steps, the same number of torch steps,
round after round, the order swapped each round) so that both see the same machine
load; each figure is the median over rounds. Without torch, lmcore runs alone.

Example:
    $ lmcore bench gpt
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np

from lmcore import backend
from lmcore.bench.common import print_table, race, speed_columns, thread_limit
from lmcore.models.gpt import GPT, GPTConfig
from lmcore.rng import manual_seed

VOCAB = 65
LR, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.99), 0.1
CPU_SHAPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12)
GPU_SHAPE = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=64)


def _torch_gpt(torch, config: GPTConfig):
    """The same GPT in torch.nn, with lmcore's (and GPT-2's) parameter names."""
    tnn, tF = torch.nn, torch.nn.functional

    class Attention(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = tnn.Linear(config.n_embd, 3 * config.n_embd)
            self.c_proj = tnn.Linear(config.n_embd, config.n_embd)

        def forward(self, x):  # (B, T, C)
            batch, length, width = x.shape
            q, k, v = self.c_attn(x).split(width, dim=2)
            q, k, v = (
                t.view(batch, length, config.n_head, -1).transpose(1, 2) for t in (q, k, v)
            )  # (B, H, T, D)
            y = tF.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(batch, length, width))

    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = tnn.Linear(config.n_embd, 4 * config.n_embd)
            self.c_proj = tnn.Linear(4 * config.n_embd, config.n_embd)

        def forward(self, x):
            return self.c_proj(tF.gelu(self.c_fc(x), approximate="tanh"))

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = tnn.LayerNorm(config.n_embd), Attention()
            self.ln_2, self.mlp = tnn.LayerNorm(config.n_embd), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class TorchGPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte = tnn.Embedding(config.vocab_size, config.n_embd)
            self.wpe = tnn.Embedding(config.block_size, config.n_embd)
            self.h = tnn.ModuleList(Block() for _ in range(config.n_layer))
            self.ln_f = tnn.LayerNorm(config.n_embd)
            self.lm_head = tnn.Linear(config.n_embd, config.vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight  # tied, as in lmcore's GPT

        def forward(self, idx):  # (B, T) -> (B, T, V)
            positions = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(positions)
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return TorchGPT()


def _lmcore_step(model, optimizer):
    def step(batch):
        idx, targets = batch
        _, loss = model(idx, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()  # .item() also waits for the GPU

    return step


def _torch_step(torch, model, optimizer):
    def step(batch):
        idx, targets = batch
        logits = model(idx)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def _torch_adamw(torch, model):
    params = list(model.parameters())  # the tied weight once
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS)


def _case(torch, device: str, shape: dict, quick: bool) -> dict:
    """Time one configuration on one device in both libraries; one row of the table."""
    shape = dict(shape)
    batch = shape.pop("batch")
    config = GPTConfig(vocab_size=VOCAB, dropout=0.0, **shape)
    xp = backend.xp(device)
    rng = np.random.default_rng(0)
    host_batches = [
        tuple(rng.integers(0, VOCAB, (batch, config.block_size)) for _ in "xy") for _ in range(4)
    ]
    manual_seed(0)
    model = GPT(config, device=device)
    batches = [tuple(xp.asarray(a) for a in pair) for pair in host_batches]
    optimizer = model.configure_optimizer(weight_decay=WEIGHT_DECAY, lr=LR, betas=BETAS)
    runners = {"lmcore": (_lmcore_step(model, optimizer), batches)}  # step, its batches
    if torch is not None:
        reference = _torch_gpt(torch, config)
        reference.load_state_dict(
            {
                k: torch.from_numpy(np.array(backend.to_device(v, "cpu")))
                for k, v in model.state_dict().items()
            }
        )
        where = "cuda" if device == "cuda" else "cpu"
        reference = reference.to(where)
        torch_batches = [tuple(torch.from_numpy(a).to(where) for a in p) for p in host_batches]
        torch_step = _torch_step(torch, reference, _torch_adamw(torch, reference))
        runners["torch"] = (torch_step, torch_batches)
    first_loss = {lib: step(data[0]) for lib, (step, data) in runners.items()}
    rounds, steps, warmup = (2, 1, 1) if quick else (9, 5, 5)
    if device == "cuda" and not quick:
        steps, warmup = 10, 10
    medians = race(runners, rounds, steps, warmup)
    tokens = batch * config.block_size
    row = {
        "device": device,
        "model": f"GPT {config.n_layer}L {config.n_head}H {config.n_embd}C, "
        f"{batch} x {config.block_size}",
        "params": f"{model.num_parameters() / 1e6:.2f} M",
        **speed_columns(medians, tokens, first_loss),
    }
    expected = math.log(VOCAB)  # a fresh GPT-2-initialized model predicts nearly uniformly
    assert all(abs(v - expected) < 0.5 for v in first_loss.values()), first_loss
    return row


def run(quick: bool = False) -> list[dict]:
    """Time GPT training steps in both libraries, print a table, return its rows."""
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    with thread_limit(threads, torch):
        rows.append(_case(torch, "cpu", CPU_SHAPE, quick))
    if backend.gpu_available():
        gpu_torch = torch if torch is not None and torch.cuda.is_available() else None
        if gpu_torch is not None:
            gpu_torch.backends.cuda.matmul.allow_tf32 = True
            gpu_torch.backends.cudnn.allow_tf32 = True
        rows.append(_case(gpu_torch, "cuda", GPU_SHAPE, quick))
    versions = f"torch {torch.__version__}" if torch else "torch not found: lmcore only"
    rounds = 2 if quick else 9
    print_table(
        rows,
        title=f"GPT training step (forward, loss, backward, AdamW, zero_grad), float32 "
        f"(TF32 allowed in torch on a GPU), CPU on {threads} threads, median of {rounds} "
        f"alternating rounds; {versions}",
    )
    return rows
