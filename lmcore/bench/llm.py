"""SmolLM2-135M-Instruct on the CPU: prefill and decode speed of lmcore, float32 and
weight-only int8, beside PyTorch + ``transformers`` on the same file and threads.

Rows (batch 1, greedy, a chat prompt of about 40 tokens):

* prefill: the prompt read at once, tokens/s;
* decode with the cache: each new token costs one position;
* decode without the cache: each new token reads the whole sequence again;
* int8: :func:`lmcore.nn.quantize_model` (per-row scales), with the cache;
* transformers (when torch, transformers and gguf are installed): the same GGUF file
  dequantized to float32, ``model.generate`` with its cache, the same thread count.

Decoding one token reads every weight once (0.54 GB in float32), so its speed is
bounded by memory bandwidth; the table shows that bound from a measured copy speed.

Example:
    $ lmcore bench llm
"""

from __future__ import annotations

import os
import time

import numpy as np

from lmcore import no_grad
from lmcore.bench.common import machine, print_table, thread_limit

MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def _tokens_per_second(fn, tokens: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return tokens / best


def _decode_rate(model, prompt, new_tokens: int, use_cache: bool, repeat: int) -> float:
    """New tokens per second, the prefill excluded (timed from the first new token)."""
    with no_grad():

        def run():
            state = None
            ids = prompt
            logits, state = model.next_token_logits(ids, None if use_cache else state)
            start = time.perf_counter()
            for _ in range(new_tokens):
                ids = np.concatenate([ids, logits.argmax(-1)[:, None]], axis=1)
                logits, state = model.next_token_logits(ids, state if use_cache else None)
            return time.perf_counter() - start

        return new_tokens / min(run() for _ in range(repeat))


def _bandwidth_gbs() -> float:
    a = np.ones(64 * 2**20 // 4, np.float32)
    b = np.empty_like(a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(5))
    return 2 * a.nbytes / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _transformers_rows(prompt_ids, new_tokens, threads, repeat) -> list[dict]:
    try:
        import torch
        import transformers
    except ImportError:
        return []
    from lmcore.models.llama import smollm2_path

    path = smollm2_path()
    with thread_limit(threads, torch):
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        ).eval()
        ids = torch.tensor(prompt_ids)
        with torch.no_grad():
            prefill = _tokens_per_second(lambda: model(ids), ids.shape[1], repeat)

            def generate(n):
                return model.generate(ids, max_new_tokens=n, do_sample=False, min_new_tokens=n,
                                      pad_token_id=2)  # fmt: skip

            both = min(_timed(lambda: generate(new_tokens + 1)) for _ in range(repeat))
            one = min(_timed(lambda: generate(1)) for _ in range(repeat))
    decode = new_tokens / max(both - one, 1e-9)
    return [
        {"library": "transformers", "weights": "float32", "what": "prefill", "tokens/s": prefill},
        {
            "library": "transformers",
            "weights": "float32",
            "what": "decode, cache",
            "tokens/s": decode,
        },
    ]


def run(quick: bool = False) -> list[dict]:
    """Time SmolLM2 in lmcore (float32, int8) and transformers; print and return the rows."""
    from lmcore.gguf import GGUFReader
    from lmcore.models.llama import Llama, smollm2_path
    from lmcore.nn.quantized import quantize_model
    from lmcore.tokenizers.gguf_bpe import GGUFBPETokenizer

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    new_tokens, repeat = (4, 1) if quick else (16, 2)
    reader = GGUFReader(smollm2_path())
    tok = GGUFBPETokenizer.from_gguf_metadata(reader.metadata)
    reader.close()
    prompt = np.array([tok.encode_chat(MESSAGES)])
    rows = []
    with thread_limit(threads):
        model = Llama.from_gguf()
        weight_bytes = sum(p.data.nbytes for p in model.parameters())
        with no_grad():
            prefill = _tokens_per_second(
                lambda: model(prompt, logits_to_keep=1), prompt.shape[1], repeat
            )
        rows.append(
            {"library": "lmcore", "weights": "float32", "what": "prefill", "tokens/s": prefill}
        )
        for use_cache in (True, False):
            rate = _decode_rate(model, prompt, new_tokens, use_cache, repeat)
            what = "decode, cache" if use_cache else "decode, no cache"
            rows.append({"library": "lmcore", "weights": "float32", "what": what, "tokens/s": rate})
        quantized = quantize_model(model, bits=8)
        with no_grad():
            prefill = _tokens_per_second(
                lambda: quantized(prompt, logits_to_keep=1), prompt.shape[1], repeat
            )
        rows.append(
            {"library": "lmcore", "weights": "int8", "what": "prefill", "tokens/s": prefill}
        )
        rate = _decode_rate(quantized, prompt, new_tokens, True, repeat)
        rows.append(
            {"library": "lmcore", "weights": "int8", "what": "decode, cache", "tokens/s": rate}
        )
        bandwidth = _bandwidth_gbs()
    rows += _transformers_rows(prompt, new_tokens, threads, repeat)
    bound = bandwidth * 1e9 / weight_bytes
    for row in rows:
        row["tokens/s"] = round(row["tokens/s"], 1)
    print_table(
        rows,
        title=f"SmolLM2-135M-Instruct, batch 1, prompt {prompt.shape[1]} tokens, {new_tokens} "
        f"new; CPU on {threads} threads ({machine()}); copy bandwidth {bandwidth:.1f} GB/s, "
        f"so float32 decoding (reading {weight_bytes / 1e9:.2f} GB a token) is bounded near "
        f"{bound:.0f} tokens/s",
    )
    return rows
