"""Masking for the masked-language-model objective, BERT's 80/10/10 rule.

Each position that may be predicted (neither a special token nor padding) is chosen with
probability ``mlm_probability`` (15 %); of the chosen ones, 80 % become the mask token, 10 %
a token drawn uniformly from the vocabulary and 10 % stay as they are. The labels hold the
original id at chosen positions and -100 elsewhere, the ``ignore_index`` of
:func:`lmcore.functional.loss_functions.cross_entropy` and of :class:`lmcore.models.bert.BERT`. The random
tokens and the unchanged 10 % keep the model from learning that only the mask token needs
a prediction, since no mask token appears when the model is used.

This is ``transformers``' ``DataCollatorForLanguageModeling`` rule (same argument names).
The random numbers come from a NumPy Generator whatever the arrays' device, so a seed gives
the same masks on NumPy and CuPy arrays.

Example:
    >>> import numpy as np
    >>> ids = np.array([[1, 5, 6, 7, 8, 9, 5, 6, 2, 0, 0]])       # 1, 2: [CLS], [SEP]; 0 pads
    >>> masked, labels = mask_tokens(ids, mask_token_id=3, vocab_size=10,
    ...                              generator=np.random.default_rng(93),
    ...                              special_token_ids=(0, 1, 2), mlm_probability=0.5)
    >>> labels                                  # four positions chosen: 6, 7, 9 and 6
    array([[-100, -100,    6,    7, -100,    9, -100,    6, -100, -100, -100]])
    >>> masked                                  # two masked, 7 -> 9 at random, one 6 kept
    array([[1, 5, 3, 9, 8, 3, 5, 6, 2, 0, 0]])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lmcore import backend

__all__ = ["IGNORE_INDEX", "mask_tokens"]

IGNORE_INDEX = -100  # the label of positions that are not scored


def mask_tokens(
    input_ids,
    mask_token_id: int,
    vocab_size: int,
    generator: np.random.Generator,
    special_token_ids: Iterable[int] = (),
    special_tokens_mask=None,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
):
    """Masked inputs and their labels, both integer arrays of the shape of ``input_ids``
    (NumPy or CuPy, on the inputs' device); ``input_ids`` itself is left unchanged.

    Args:
        input_ids: token ids of any shape, e.g. (B, T).
        mask_token_id: the id that replaces most chosen tokens ([MASK]).
        vocab_size: random replacements are drawn uniformly from ``0 .. vocab_size - 1``.
        generator: a ``numpy.random.Generator``; the same seed gives the same masks.
        special_token_ids: ids never chosen ([CLS], [SEP], [PAD], ...).
        special_tokens_mask: booleans of the shape of ``input_ids``, True at positions
            never chosen (``transformers``' name), e.g. ``attention_mask == 0`` for padding.
        mlm_probability: probability that a position that may be chosen is chosen.
        mask_replace_prob, random_replace_prob: shares of the chosen positions that become
            the mask token and a random token; the rest keep their token.
    """
    xp = backend.get_array_module(input_ids)
    ids = xp.asarray(input_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"mask_tokens takes integer token ids, got dtype {ids.dtype}")
    for name, value in (
        ("mlm_probability", mlm_probability),
        ("mask_replace_prob", mask_replace_prob),
        ("random_replace_prob", random_replace_prob),
    ):
        if not 0 <= value <= 1:
            raise ValueError(f"mask_tokens: {name} is a probability in [0, 1], got {value}")
    if mask_replace_prob + random_replace_prob > 1:
        raise ValueError(
            f"mask_tokens: mask_replace_prob + random_replace_prob = "
            f"{mask_replace_prob + random_replace_prob} exceeds 1; they are shares of the "
            "chosen positions."
        )
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(
            f"mask_tokens: mask_token_id {mask_token_id} lies outside the vocabulary of "
            f"{vocab_size} ids"
        )
    eligible = ~xp.isin(ids, xp.asarray(list(special_token_ids), dtype=ids.dtype))
    if special_tokens_mask is not None:
        special_tokens_mask = xp.asarray(special_tokens_mask)
        if special_tokens_mask.shape != ids.shape or special_tokens_mask.dtype != bool:
            raise ValueError(
                f"mask_tokens: special_tokens_mask must be boolean of the shape of input_ids "
                f"{ids.shape}, got {special_tokens_mask.dtype} {special_tokens_mask.shape}"
            )
        eligible &= ~special_tokens_mask
    # Three draws of the full shape, always in this order: the masks depend on the seed
    # and the shape only, not on the ids.
    chosen = xp.asarray(generator.random(ids.shape) < mlm_probability) & eligible
    kind = xp.asarray(generator.random(ids.shape))  # which replacement a chosen one gets
    random_ids = xp.asarray(generator.integers(0, vocab_size, ids.shape), dtype=ids.dtype)
    to_mask = chosen & (kind < mask_replace_prob)
    to_random = (
        chosen & (kind >= mask_replace_prob) & (kind < mask_replace_prob + random_replace_prob)
    )
    masked = xp.where(to_mask, ids.dtype.type(mask_token_id), ids)
    masked = xp.where(to_random, random_ids, masked)
    labels = xp.where(chosen, ids, ids.dtype.type(IGNORE_INDEX))
    return masked, labels
