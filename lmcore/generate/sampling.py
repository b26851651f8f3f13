"""The decoding loop: one token per row and step, yielded as soon as it is chosen.

:func:`stream` is the loop that :func:`lmcore.generate.generate` runs to completion; a
caller that wants each token at once (to print text as it comes) iterates it directly.

Example:
    >>> import numpy as np
    >>> from lmcore.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    >>> steps = stream(model, np.array([[1, 2], [3, 4]]), max_new_tokens=3, seed=0)
    >>> [token.shape for token in steps]                    # one id per row, each step
    [(2,), (2,), (2,)]
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.generate.logits import apply_repetition_penalty, check_sampling, sample_next
from lmcore.generate.stopping import StopCondition
from lmcore.nn.module import evaluation_mode
from lmcore.rng import default_generator

__all__ = ["checked_prompt", "model_step", "padding_id", "stream"]


def checked_prompt(model, idx, max_new_tokens: int):
    """``idx`` (B, T) as ids on the model's device, or a clear error for an empty prompt or
    a negative ``max_new_tokens``."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    idx = model._checked_ids(idx) if hasattr(model, "_checked_ids") else _ids_of(model, idx)
    if idx.shape[1] == 0:
        raise ValueError(
            "generate needs a prompt of at least one token per row, got shape "
            f"{tuple(idx.shape)}; start from a token such as a newline or <|endoftext|>."
        )
    return idx


def _ids_of(model, idx):
    """``idx`` as a (B, T) integer array on the device of the model's parameters."""
    from lmcore.models.token_ids import checked_token_ids

    return checked_token_ids(idx, next(model.parameters()).data, type(model).__name__)


def model_step(model, idx, state, use_cache: bool):
    """The model's logits (B, V) for the token after ``idx`` (B, T) and the state to pass
    with the next call: what the model returned, or None when ``use_cache`` is False (the
    model then reads the whole sequence every time). The model runs in evaluation mode
    without recording a graph, and gets its own mode back."""
    with evaluation_mode(model):
        logits, state = model.next_token_logits(idx, state)
    return logits, state if use_cache else None


def stream(
    model,
    idx,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    *,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_token_id=None,
    stop_strings=None,
    tokenizer=None,
    pad_token_id: int | None = None,
    use_cache: bool = True,
):
    """Yield the next token id of each row of ``idx`` (B, T), an array (B,), step by step,
    up to ``max_new_tokens`` times.

    Each step asks ``model.next_token_logits`` for the logits, applies the repetition
    penalty, then picks a token as :func:`~lmcore.generate.sample_next` does
    (``temperature`` 0: greedy; else temperature, ``top_k``, ``top_p``, a draw fixed by
    ``seed``). A row finishes at a token of ``eos_token_id``, or once its new text
    contains one of ``stop_strings`` (decoded with ``tokenizer``); from then on it gets
    ``pad_token_id`` (by default the first ``eos_token_id``), and the stream ends when
    every row has finished. The arguments are checked at the call, before any step.
    See :func:`lmcore.generate.generate` for each of them.

    Example:
        >>> import numpy as np
        >>> from lmcore.models import GPT, GPTConfig
        >>> from lmcore.tokenizers import CharTokenizer
        >>> tok = CharTokenizer("abc ")
        >>> model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1,
        ...                       n_head=2, n_embd=8))
        >>> prompt = np.array([tok.encode("abc")])
        >>> pieces = []
        >>> for token in stream(model, prompt, 6, seed=0, tokenizer=tok, stop_strings=" "):
        ...     pieces.append(tok.decode(token.tolist()))    # or print(..., end="", flush=True)
        >>> text = "".join(pieces)                            # up to the first space
        >>> " " not in text[:-1] and (text.endswith(" ") or len(text) == 6)
        True
    """
    check_sampling(temperature, top_k, top_p, repetition_penalty)
    idx = checked_prompt(model, idx, max_new_tokens)
    stop = StopCondition(eos_token_id, stop_strings, tokenizer)
    pad = padding_id(pad_token_id, stop, idx.shape[0])
    xp = backend.get_array_module(idx)
    generator = default_generator(xp) if seed is None else xp.random.default_rng(seed)
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return _steps(model, idx, max_new_tokens, options, repetition_penalty, stop, pad, use_cache)


def padding_id(pad_token_id: int | None, stop: StopCondition, batch_size: int) -> int | None:
    """The id that fills rows which finished before the others: ``pad_token_id``, else the
    first end-of-sequence id; an error when rows can finish apart and neither is given."""
    if pad_token_id is not None:
        return int(pad_token_id)
    if stop.eos_token_id:
        return stop.eos_token_id[0]
    if stop and batch_size > 1:
        raise ValueError(
            "rows that meet a stop string before the others are padded: pass "
            "pad_token_id= (or eos_token_id=, whose first id pads by default)"
        )
    return None


def _steps(model, idx, max_new_tokens, options, repetition_penalty, stop, pad, use_cache):
    """The generator behind :func:`stream`, its arguments already checked."""
    xp = backend.get_array_module(idx)
    prompt_length = idx.shape[1]
    finished = xp.zeros(idx.shape[0], dtype=bool)  # (B,)
    state = None
    for _ in range(max_new_tokens):
        logits, state = model_step(model, idx, state, use_cache)  # (B, V)
        logits = apply_repetition_penalty(logits.astype(np.float64), idx, repetition_penalty)
        next_ids = sample_next(logits, **options)[:, 0].astype(idx.dtype)  # (B,)
        if pad is not None:
            next_ids = xp.where(finished, next_ids.dtype.type(pad), next_ids)
        idx = xp.concatenate([idx, next_ids[:, None]], axis=1)
        yield next_ids
        if stop:
            finished |= stop(idx, prompt_length)
            if bool(finished.all()):
                return
