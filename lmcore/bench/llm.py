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


def _synchronize(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def _xp_of(model):
    from lmcore import backend

    return backend.get_array_module(next(iter(model.parameters())).data)


def prefill_rate(model, prompt, repeat: int = 2) -> float:
    """Prompt tokens per second of reading ``prompt`` (B, T) at once, with no cache and
    the logits of the last position only (the best of ``repeat`` runs).

    Example:
        >>> from lmcore.models.llama import Llama, LlamaConfig
        >>> tiny = Llama(LlamaConfig(50, 32, 1, 2, 1, 16, 32))
        >>> prefill_rate(tiny, np.arange(8)[None]) > 0
        True
    """
    xp = _xp_of(model)
    prompt = xp.asarray(prompt)
    best = float("inf")
    with no_grad():
        for _ in range(repeat):
            start = time.perf_counter()
            model(prompt, logits_to_keep=1)
            _synchronize(xp)
            best = min(best, time.perf_counter() - start)
    return prompt.shape[0] * prompt.shape[1] / best


def decode_rate(model, prompt, new_tokens: int, use_cache: bool = True, repeat: int = 2) -> float:
    """New tokens per second of greedy decoding after ``prompt`` (B, T), the prefill
    excluded (timed from the first new token): with the key-value cache each step reads
    the newest token only; without it, each step reads the whole sequence again. The
    best of ``repeat`` runs.

    Example:
        >>> from lmcore.models.llama import Llama, LlamaConfig
        >>> tiny = Llama(LlamaConfig(50, 32, 1, 2, 1, 16, 32))
        >>> decode_rate(tiny, np.arange(8)[None], 4) > 0
        True
    """
    xp = _xp_of(model)
    prompt = xp.asarray(prompt)

    def run():
        logits, state = model.next_token_logits(prompt)  # the prefill, not timed
        ids = prompt
        _synchronize(xp)
        start = time.perf_counter()
        for _ in range(new_tokens):
            ids = xp.concatenate([ids, logits.argmax(-1)[:, None].astype(ids.dtype)], axis=1)
            logits, state = model.next_token_logits(ids, state if use_cache else None)
        _synchronize(xp)
        return time.perf_counter() - start

    with no_grad():
        return prompt.shape[0] * new_tokens / min(run() for _ in range(repeat))


def copy_bandwidth(device: str = "cpu", megabytes: int = 64, repeat: int = 5) -> float:
    """Measured memory bandwidth in GB/s: bytes read plus bytes written by a copy of
    ``megabytes`` MB (larger than the caches), the best of ``repeat`` runs, on ``"cpu"``
    (NumPy) or ``"cuda"`` (CuPy).

    Example:
        >>> copy_bandwidth(megabytes=8, repeat=2) > 0
        True
    """
    from lmcore import backend

    xp = backend.xp(device)
    a = xp.ones(megabytes * 2**20 // 4, xp.float32)
    b = xp.empty_like(a)
    xp.copyto(b, a)  # the first copy also touches b's pages: not timed
    times = []
    for _ in range(repeat):
        _synchronize(xp)
        start = time.perf_counter()
        xp.copyto(b, a)
        _synchronize(xp)
        times.append(time.perf_counter() - start)
    return 2 * a.nbytes / min(times) / 1e9


def _tokens_per_second(fn, tokens: int, repeat: int) -> float:
    return tokens / min(_timed(fn) for _ in range(repeat))


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
        prefill = prefill_rate(model, prompt, repeat)
        rows.append(
            {"library": "lmcore", "weights": "float32", "what": "prefill", "tokens/s": prefill}
        )
        for use_cache in (True, False):
            rate = decode_rate(model, prompt, new_tokens, use_cache, repeat)
            what = "decode, cache" if use_cache else "decode, no cache"
            rows.append({"library": "lmcore", "weights": "float32", "what": what, "tokens/s": rate})
        quantized = quantize_model(model, bits=8)
        prefill = prefill_rate(quantized, prompt, repeat)
        rows.append(
            {"library": "lmcore", "weights": "int8", "what": "prefill", "tokens/s": prefill}
        )
        rate = decode_rate(quantized, prompt, new_tokens, True, repeat)
        rows.append(
            {"library": "lmcore", "weights": "int8", "what": "decode, cache", "tokens/s": rate}
        )
        bandwidth = copy_bandwidth()
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
