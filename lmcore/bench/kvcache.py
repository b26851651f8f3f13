"""Generation with and without the key-value cache: tokens per second of a GPT, greedy.

The model has nanoGPT's Shakespeare shape (6 layers, 6 heads, width 384, block 256,
vocabulary 65) in float32, with GPT-2's initialization. At each context length N (64,
128, 256) a prompt of N - 32 tokens is continued by 32 tokens (quick: 4), so the last
token is chosen with N tokens of context:

* without the cache, each new token runs the whole context through the model again;
* with it, the prompt is read once (that time is counted) and each new token costs one
  position.

Both must choose the same tokens, which is checked at every context. The two take
turns, round after round, the order swapped each round, so that both see the same
machine load; each figure is the median over rounds. On a GPU (CuPy present) the same
rows follow for the device.

Example:
    $ lmcore bench kvcache
"""

from __future__ import annotations

import os

import numpy as np

from lmcore import backend
from lmcore.bench.common import print_table, race, thread_limit
from lmcore.models.gpt import GPT, GPTConfig
from lmcore.rng import manual_seed

SHAPE = dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)
CONTEXTS = (64, 128, 256)


def _case(model: GPT, device: str, context: int, new_tokens: int, rounds: int) -> dict:
    """Time greedy generation up to ``context`` tokens with and without the cache."""
    xp = backend.xp(device)
    host = np.random.default_rng(context).integers(
        0, SHAPE["vocab_size"], (1, context - new_tokens)
    )
    prompt = xp.asarray(host)  # (1, context - new_tokens)
    outputs = {}

    def runner(use_cache: bool):
        def step(_):
            ids = model.generate(prompt, new_tokens, temperature=0, use_cache=use_cache)
            outputs[use_cache] = backend.to_device(ids, "cpu")  # also waits for the GPU

        return step, [None]

    medians = race(
        {"cache": runner(True), "recompute": runner(False)}, rounds=rounds, steps=1, warmup=1
    )
    same = np.array_equal(outputs[True], outputs[False])
    assert same, f"the cache changed the tokens at context {context}"
    return {
        "device": device,
        "context": context,
        "prompt + new": f"{context - new_tokens} + {new_tokens}",
        "recompute tokens/s": round(new_tokens / medians["recompute"], 1),
        "cache tokens/s": round(new_tokens / medians["cache"], 1),
        "speed-up": f"{medians['recompute'] / medians['cache']:.1f}x",
        "same tokens": "yes" if same else "no",
    }


def run(quick: bool = False) -> list[dict]:
    """Time generation with and without the key-value cache, print a table, return its rows."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    new_tokens, rounds = (4, 1) if quick else (32, 3)
    devices = ["cpu"] + (["cuda"] if backend.gpu_available() else [])
    rows = []
    for device in devices:
        manual_seed(0)
        model = GPT(GPTConfig(**SHAPE), device=device)
        with thread_limit(threads):
            rows += [_case(model, device, n, new_tokens, rounds) for n in CONTEXTS]
    c = SHAPE
    print_table(
        rows,
        title=f"GPT generation, greedy, batch 1, float32: {c['n_layer']} layers, "
        f"{c['n_head']} heads, width {c['n_embd']}, block {c['block_size']}; CPU on {threads} "
        f"threads, median of {rounds} alternating rounds; prompt reading included",
    )
    return rows
