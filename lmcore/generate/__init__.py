"""Generating text with a language model: the decoding loop every model's ``generate`` runs,
the choice of each next token, stopping, and beam search.

* ``logits``: from logits to a token: repetition penalty, temperature, top-k, top-p
  (nucleus), greedy or a seeded draw (:func:`sample_next`).
* ``stopping``: when a row is finished: end-of-sequence ids, stop strings
  (:class:`StopCondition`).
* ``sampling``: :func:`stream`, the loop, one token per row and step, yielded as it is
  chosen.
* ``beam``: :func:`beam_search`.

A model plugs in through one method, ``next_token_logits(idx, state)``: given all the
ids so far (B, T) and what it returned the step before (None at first), it returns the
logits of the next token (B, V) and a new state; from one call to the next, ``idx``
grows by one token per row. A GPT keeps a key-value cache as its state: it reads the
prompt once, then one token a step. A recurrent model reads the whole prompt once, then
one token a step, carrying its hidden state. Without a state (``use_cache=False``) a
model reads the whole sequence at every step. For beam search a state may offer
``reorder_cache(beam_idx)``; one that does not is rebuilt from the ids each step.

Example:
    >>> import numpy as np
    >>> from lmcore.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    >>> prompt = np.array([[1, 2, 3]])                                  # (B, T)
    >>> generate(model, prompt, 4, top_p=0.9, repetition_penalty=1.3, seed=0).shape
    (1, 7)
    >>> generate(model, prompt, 4, num_beams=3).shape
    (1, 7)
    >>> sample_next(np.array([[0.0, 5.0, 1.0]]), temperature=0)         # greedy: (B, 1)
    array([[1]])
"""

from __future__ import annotations

from lmcore import backend
from lmcore.generate.beam import beam_search
from lmcore.generate.logits import (
    apply_repetition_penalty,
    check_sampling,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from lmcore.generate.sampling import checked_prompt, stream
from lmcore.generate.stopping import StopCondition

__all__ = [
    "StopCondition",
    "apply_repetition_penalty",
    "beam_search",
    "check_sampling",
    "generate",
    "sample_next",
    "stream",
    "top_k_filter",
    "top_p_filter",
]


def generate(
    model,
    idx,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    *,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    eos_token_id=None,
    stop_strings=None,
    tokenizer=None,
    pad_token_id: int | None = None,
    use_cache: bool = True,
):
    """Continue each row of ``idx`` (B, T) by up to ``max_new_tokens`` tokens chosen from
    ``model.next_token_logits``; returns the ids (B, T + n), n <= ``max_new_tokens``, on
    the model's device. The names and meanings follow ``transformers``' ``generate``.

    Args:
        temperature: divides the logits; 0 takes the most likely token (greedy).
        top_k: sample among the ``top_k`` most likely tokens only.
        seed: fixes the draws (else lmcore.rng's generator is used).
        top_p: sample among the most likely tokens that together hold ``top_p`` of the
            probability (nucleus sampling), in (0, 1].
        repetition_penalty: > 0; above 1, tokens already in the row become less likely
            (CTRL's rule: positive logits divided by it, negative ones multiplied).
        num_beams: above 1, beam search (:func:`beam_search`) instead of sampling:
            ``temperature``, ``top_k``, ``top_p`` and ``seed`` then play no part.
        length_penalty, early_stopping: beam search's, as in ``transformers``.
        eos_token_id: one id or several that end a row (and stay in it).
        stop_strings: one string or several that end a row once its new text contains
            them (they stay in it); needs ``tokenizer``, with ``decode(ids) -> str``.
        pad_token_id: fills rows that finished before the others; by default the first
            ``eos_token_id``. Generation ends when every row has finished.
        use_cache: let the model carry its state (a GPT's key-value cache) from step to
            step; False makes it read the whole sequence every step, the slow way, which
            gives the same tokens.

    Runs the model in evaluation mode (no dropout) without recording a graph, and gives
    it its own mode back. The tokens are those :func:`stream` yields, gathered.

    Example:
        >>> import numpy as np
        >>> from lmcore.models import GPT, GPTConfig
        >>> model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
        >>> ids = generate(model, np.array([[1, 2]]), 50, seed=0, eos_token_id=5)
        >>> len(ids[0]) == 52 or bool(ids[0, -1] == 5)    # 50 new tokens, or fewer up to a 5
        True
    """
    if num_beams != 1:
        if top_k is not None or top_p is not None:
            raise ValueError(
                "top_k and top_p choose among tokens to sample; beam search does not sample: "
                "drop them, or use num_beams=1"
            )
        return beam_search(
            model,
            idx,
            max_new_tokens,
            num_beams,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            repetition_penalty=repetition_penalty,
            eos_token_id=eos_token_id,
            stop_strings=stop_strings,
            tokenizer=tokenizer,
            pad_token_id=pad_token_id,
            use_cache=use_cache,
        )
    steps = stream(
        model,
        idx,
        max_new_tokens,
        temperature,
        top_k,
        seed,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        eos_token_id=eos_token_id,
        stop_strings=stop_strings,
        tokenizer=tokenizer,
        pad_token_id=pad_token_id,
        use_cache=use_cache,
    )
    prompt = checked_prompt(model, idx, max_new_tokens)
    xp = backend.get_array_module(prompt)
    return xp.concatenate([prompt] + [token[:, None] for token in steps], axis=1)
