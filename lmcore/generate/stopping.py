"""When a generated sequence is finished: at an end-of-sequence token, or once its text
contains a stop string.

Example:
    >>> import numpy as np
    >>> from lmcore.tokenizers import CharTokenizer
    >>> tok = CharTokenizer("ab.\\n")
    >>> stop = StopCondition(stop_strings=".\\n", tokenizer=tok)
    >>> ids = np.array([tok.encode("ab.\\n"), tok.encode("ab.a")])    # (B, T)
    >>> stop(ids, prompt_length=1)                                   # the text after "a"
    array([ True, False])
"""

from __future__ import annotations

import numbers

from lmcore import backend

__all__ = ["StopCondition"]


class StopCondition:
    """Tells which rows of ids (B, T) have just finished.

    Args:
        eos_token_id: one id or several: a row ends with the token that is one of them.
        stop_strings: one string or several: a row ends with the token that makes the
            text generated so far (the ids after the prompt, decoded) contain one of them;
            the stop string itself stays in the output, as in ``transformers``.
        tokenizer: anything with ``decode(ids) -> str``, needed for ``stop_strings``.

    Example:
        >>> import numpy as np
        >>> StopCondition(eos_token_id=[0, 9])(np.array([[4, 9], [9, 4]]), prompt_length=1)
        array([ True, False])
    """

    def __init__(self, eos_token_id=None, stop_strings=None, tokenizer=None):
        if eos_token_id is None:
            eos = ()
        elif isinstance(eos_token_id, numbers.Integral):
            eos = (int(eos_token_id),)
        else:
            eos = tuple(int(i) for i in eos_token_id)
        if any(i < 0 for i in eos):
            raise ValueError(f"eos_token_id must hold token ids >= 0, got {eos_token_id}")
        strings = (stop_strings,) if isinstance(stop_strings, str) else tuple(stop_strings or ())
        if any(not isinstance(s, str) or not s for s in strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {stop_strings!r}")
        if strings and not callable(getattr(tokenizer, "decode", None)):
            raise ValueError(
                "stop_strings are matched in text: pass tokenizer= (anything with "
                "decode(ids) -> str, such as the tokenizer the model was trained with)"
            )
        self.eos_token_id, self.stop_strings, self.tokenizer = eos, strings, tokenizer

    def __bool__(self) -> bool:
        """Whether anything can stop a row before its length runs out."""
        return bool(self.eos_token_id or self.stop_strings)

    def __call__(self, ids, prompt_length: int):
        """A boolean (B,): True where row ``ids[b]`` (B, T) has just finished, judging
        its last token and the text of ``ids[b, prompt_length:]``."""
        xp = backend.get_array_module(ids)
        done = xp.zeros(ids.shape[0], dtype=bool)
        for token in self.eos_token_id:
            done |= ids[:, -1] == token
        if self.stop_strings:
            generated = backend.to_device(ids[:, prompt_length:], "cpu").tolist()
            texts = [self.tokenizer.decode(row) for row in generated]
            found = [any(s in text for s in self.stop_strings) for text in texts]
            done |= xp.asarray(found, dtype=bool)
        return done

    def __repr__(self) -> str:
        return (
            f"StopCondition(eos_token_id={list(self.eos_token_id)}, "
            f"stop_strings={list(self.stop_strings)})"
        )
