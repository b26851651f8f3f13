"""Beam search: keep the ``num_beams`` most likely continuations of each prompt, step by
step, and return the best finished one.

The algorithm is that of Hugging Face ``transformers`` (``GenerationMixin._beam_search``,
without sampling), so the two return the same sequences for the same model:

* each step scores every continuation of every running beam by its summed log
  probability, and keeps the best ``2 * num_beams`` candidates (more with several
  end-of-sequence ids), so that ``num_beams`` of them can go on even if the others stop;
* a candidate that stops (an end-of-sequence id, a stop string, or the length limit)
  and ranks among the first ``num_beams`` joins the finished hypotheses with the score
  ``sum of log probabilities / generated length ** length_penalty``; the best
  ``num_beams`` finished hypotheses are kept;
* a prompt is done once no running beam can beat its worst kept hypothesis
  (``early_stopping=False``: judged at the current length; ``True``: as soon as
  ``num_beams`` hypotheses are finished; ``"never"``: at the longest length, when
  ``length_penalty > 0``).

Example:
    >>> import numpy as np
    >>> from lmcore.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8))
    >>> prompt = np.array([[1, 2, 3]])
    >>> best = beam_search(model, prompt, max_new_tokens=5, num_beams=3)
    >>> best.shape
    (1, 8)
    >>> greedy = model.generate(prompt, 5, temperature=0)
    >>> bool((beam_search(model, prompt, 5, num_beams=1) == greedy).all())
    True
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.generate.logits import apply_repetition_penalty, check_sampling
from lmcore.generate.sampling import checked_prompt, model_step, padding_id
from lmcore.generate.stopping import StopCondition

__all__ = ["beam_search"]

NEVER = -1.0e9  # the score of what may not be chosen, as in transformers


def beam_search(
    model,
    idx,
    max_new_tokens: int,
    num_beams: int = 4,
    *,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    repetition_penalty: float = 1.0,
    eos_token_id=None,
    stop_strings=None,
    tokenizer=None,
    pad_token_id: int | None = None,
    use_cache: bool = True,
):
    """The most likely continuation of each row of ``idx`` (B, T) found by beam search with
    ``num_beams`` beams: ids (B, T + n), n <= ``max_new_tokens``, on the model's device.

    ``length_penalty`` is the exponent of the generated length that divides a finished
    sequence's summed log probability (above 0 favours longer sequences, below 0 shorter
    ones); ``early_stopping`` is one of False, True, "never" (see the module docstring).
    ``repetition_penalty`` applies to the log probabilities, as in ``transformers``. The
    stopping arguments and ``use_cache`` are those of :func:`lmcore.generate.generate`;
    rows shorter than the longest are filled with ``pad_token_id`` (by default the first
    ``eos_token_id``). With ``num_beams=1`` and no stop condition the result is greedy
    decoding's.
    """
    if not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if early_stopping is not True and early_stopping is not False and early_stopping != "never":
        raise ValueError(f"early_stopping must be False, True or 'never', got {early_stopping!r}")
    check_sampling(repetition_penalty=repetition_penalty)
    prompt = checked_prompt(model, idx, max_new_tokens)
    stop = StopCondition(eos_token_id, stop_strings, tokenizer)
    pad = padding_id(pad_token_id, stop, prompt.shape[0])
    if max_new_tokens == 0:
        return prompt
    xp = backend.get_array_module(prompt)
    batch, prompt_length = prompt.shape
    beams, max_length = num_beams, prompt_length + max_new_tokens
    candidates = max(2, 1 + len(stop.eos_token_id)) * beams  # kept each step
    rows = xp.arange(batch)[:, None]  # (B, 1), to pick per row

    # Running beams: their ids (B, K, max_length) and summed log probabilities (B, K). At
    # first every beam is the prompt; only the first may grow, so the others start at NEVER.
    fill = 0 if pad is None else pad
    running = xp.full((batch, beams, max_length), fill, dtype=prompt.dtype)
    running[:, :, :prompt_length] = prompt[:, None, :]
    running_scores = xp.zeros((batch, beams))
    running_scores[:, 1:] = NEVER
    # Finished hypotheses, best first: ids, scores (length-penalized), lengths, whether real.
    finished = running.copy()
    finished_scores = xp.full((batch, beams), NEVER)
    finished_lengths = xp.full((batch, beams), prompt_length)
    is_finished = xp.zeros((batch, beams), dtype=bool)
    improvable = xp.ones((batch, 1), dtype=bool)  # can a running beam still do better?
    in_top = xp.arange(candidates) < beams  # (2K,): only these may finish

    state = None
    for length in range(prompt_length, max_length):  # ids so far: length; adding one
        flat = running[:, :, :length].reshape(batch * beams, length)  # (B*K, length)
        logits, state = model_step(model, flat, state, use_cache)  # (B*K, V)
        log_probs = _log_softmax(logits.astype(np.float64))
        log_probs = apply_repetition_penalty(log_probs, flat, repetition_penalty)
        vocab = log_probs.shape[-1]
        totals = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(
            batch, beams * vocab
        )  # (B, K*V)

        # The best candidates: which beam each continues, with which token.
        top = xp.argsort(-totals, axis=-1, kind="stable")[:, :candidates]  # (B, 2K)
        top_scores = totals[rows, top]
        source = top // vocab  # (B, 2K), beam within the row
        grown = running[rows, source]  # (B, 2K, max_length)
        grown[:, :, length] = top % vocab
        stops = stop(grown[:, :, : length + 1].reshape(-1, length + 1), prompt_length)
        stops = stops.reshape(batch, candidates)
        if length + 1 == max_length:
            stops[:] = True

        # The running beams of the next step: the best candidates that did not stop.
        alive_scores = top_scores + stops * NEVER
        keep = xp.argsort(-alive_scores, axis=-1, kind="stable")[:, :beams]  # (B, K)
        running, running_scores = grown[rows, keep], alive_scores[rows, keep]
        beam_idx = (source[rows, keep] + rows * beams).reshape(-1)  # (B*K,) rows of flat

        # Finished hypotheses: merge the candidates that stopped among the first K.
        new = stops & in_top[None, :]
        scores = top_scores / (length + 1 - prompt_length) ** length_penalty
        full = is_finished.all(axis=1, keepdims=True) & (early_stopping is True)
        scores = scores + (full | ~improvable | ~new) * NEVER
        merged_scores = xp.concatenate([finished_scores, scores], axis=1)  # (B, K + 2K)
        best = xp.argsort(-merged_scores, axis=-1, kind="stable")[:, :beams]
        finished = xp.concatenate([finished, grown], axis=1)[rows, best]
        finished_scores = merged_scores[rows, best]
        new_lengths = xp.full((batch, candidates), length + 1)
        finished_lengths = xp.concatenate([finished_lengths, new_lengths], axis=1)[rows, best]
        is_finished = xp.concatenate([is_finished, new], axis=1)[rows, best]

        if state is not None:
            reorder = getattr(state, "reorder_cache", None)
            if reorder is None:
                state = None  # a state that cannot follow the beams is rebuilt from the ids
            else:
                reorder(beam_idx)

        improvable &= _can_improve(
            running_scores,
            finished_scores,
            is_finished,
            length + 1 - prompt_length,
            max_new_tokens,
            length_penalty,
            early_stopping,
        )
        all_full = bool(is_finished.all()) and early_stopping is True
        if not bool(improvable.any()) or all_full or bool(stops.all()):
            break

    length = int(finished_lengths[:, 0].max())
    return finished[:, 0, :length]


def _can_improve(
    running_scores,
    finished_scores,
    is_finished,
    generated,
    max_new_tokens,
    length_penalty,
    early_stopping,
):
    """(B, 1): whether the best running beam of each row could still score above the worst
    kept hypothesis, judged at the current length (or the longest, for "never")."""
    xp = backend.get_array_module(running_scores)
    if early_stopping == "never" and length_penalty > 0:
        generated = max_new_tokens
    best_possible = running_scores[:, :1] / generated**length_penalty  # (B, 1)
    worst = xp.where(is_finished, finished_scores.min(axis=1, keepdims=True), NEVER)
    return (best_possible > worst).any(axis=-1, keepdims=True)


def _log_softmax(logits):
    """log softmax over the last axis of (B, V) logits."""
    xp = backend.get_array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
