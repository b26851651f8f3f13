"""A byte-level BPE vocabulary as a GGUF file stores it, and the chat template of SmolLM2.

llama.cpp's files keep the tokenizer in their metadata: ``tokenizer.ggml.tokens`` (every
token as GPT-2's printable string, ``"Ġworld"`` for ``b" world"``, see
:func:`~lmcore.tokenizers.gpt2.bytes_to_unicode`), ``tokenizer.ggml.merges`` (``"Ġ t"``,
in rank order), ``tokenizer.ggml.token_type`` (1 normal, 3 control, 4 user-defined...),
the bos/eos ids and ``tokenizer.ggml.pre``, the name of the pre-tokenizer. Unlike
lmcore's own :class:`~lmcore.tokenizers.bpe.BPETokenizer`, ids are not laid out as
"bytes, then merges": SmolLM2 puts its 17 special tokens first and lacks 21 byte tokens
that never occur in text (control bytes, bytes no UTF-8 text holds). So this tokenizer
keeps the file's ids and merges by rank: repeatedly join the adjacent pair of lowest rank.

Example:
    >>> tok = GGUFBPETokenizer(["<s>", "a", "b", "c", "ab", "abc"], ["a b", "ab c"],
    ...                        token_types=[3, 1, 1, 1, 1, 1])
    >>> tok.encode("abcab"), tok.decode([5, 4])
    ([5, 4], 'abcab')
    >>> apply_chat_template([{"role": "user", "content": "Hi"}], system_default=None)
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from lmcore.tokenizers.bpe import BPETokenizer
from lmcore.tokenizers.gpt2 import bytes_to_unicode
from lmcore.tokenizers.pretokenize import GPT2_PATTERN, compiled

__all__ = ["PRE_TOKENIZERS", "GGUFBPETokenizer", "SMOLLM_SYSTEM", "apply_chat_template"]

#: SmolLM's pre-tokenizer (llama.cpp's ``smollm``, Hugging Face's ``Digits(individual)``
#: then ``ByteLevel``): every digit is a chunk of its own, the rest is cut by GPT-2's
#: pattern. One regex does both: a digit alone first; `` ?\p{N}+`` dropped; whitespace
#: just before a digit taken whole (GPT-2's ``\s+(?!\S)`` would leave one space of it to
#: the next chunk, since the digit run is not the end of a chunk there).
SMOLLM_PATTERN = (
    r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+"""
)

#: ``tokenizer.ggml.pre`` -> pre-tokenization regex.
PRE_TOKENIZERS = {"gpt2": GPT2_PATTERN, "smollm": SMOLLM_PATTERN, "default": GPT2_PATTERN}

#: The system prompt SmolLM2's template adds when a conversation has none.
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

_SPECIAL_TYPES = (3, 4)  # llama.cpp's CONTROL and USER_DEFINED tokens: matched whole in text


class GGUFBPETokenizer(BPETokenizer):
    """Byte-level BPE over a vocabulary given as token strings (GPT-2's byte-as-character
    spelling) and ranked merges, with the file's own ids.

    Args:
        tokens: token strings, the id of each its index.
        merges: ``"left right"`` strings (or pairs) in rank order.
        token_types: llama.cpp's type of each token; types 3 (control) and 4
            (user-defined) are special tokens, matched whole in text by
            ``encode(text, allowed_special="all")``.
        pre: the pre-tokenizer's name (``tokenizer.ggml.pre``): ``"smollm"``, ``"gpt2"``.
        bos_token_id, eos_token_id: from the file (``None`` when it has none).

    Bytes the vocabulary has no token for are dropped when encoding, as Hugging Face's
    byte-level BPE does; for SmolLM2 that is control bytes such as ``"\\x04"``.
    """

    kind = "gguf-bpe"

    def __init__(
        self,
        tokens: list[str],
        merges: Iterable,
        token_types: Iterable[int] | None = None,
        pre: str = "gpt2",
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
    ):
        if pre not in PRE_TOKENIZERS:
            raise ValueError(
                f"GGUF pre-tokenizer {pre!r} is not supported; lmcore knows "
                f"{', '.join(PRE_TOKENIZERS)}"
            )
        self.tokens = [str(t) for t in tokens]
        self.token_types = (
            [1] * len(self.tokens) if token_types is None else [int(t) for t in token_types]
        )
        if len(self.token_types) != len(self.tokens):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.token_types)} token types")
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}
        self.merge_list = [
            tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges
        ]
        self.pre, self.pattern = pre, PRE_TOKENIZERS[pre]
        self._regex = compiled(self.pattern)
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id
        char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
        self.special_tokens = {
            t: i
            for i, (t, kind) in enumerate(zip(self.tokens, self.token_types))
            if kind in _SPECIAL_TYPES
        }
        table = []
        for i, token in enumerate(self.tokens):
            if i in self.special_tokens.values() or any(c not in char_to_byte for c in token):
                table.append(token.encode("utf-8"))
            else:
                table.append(bytes(char_to_byte[c] for c in token))
        self._table = table
        self.vocab = dict(enumerate(table))
        byte_to_char = bytes_to_unicode()
        # byte value -> id, or -1 where the vocabulary has no token for the byte
        self.byte_ids = [self.token_to_id.get(byte_to_char[b], -1) for b in range(256)]
        # (left id, right id) -> (rank, merged id), and (left id, right id) -> merged id
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self.merge_list):
            ids = (self.token_to_id.get(left), self.token_to_id.get(right))
            joined = self.token_to_id.get(left + right)
            if None in ids or joined is None:
                raise ValueError(
                    f"merge {rank} ({left!r} {right!r}) names a token the vocabulary lacks"
                )
            self.ranks.setdefault(ids, (rank, joined))
        self.merges = {pair: joined for pair, (_, joined) in self.ranks.items()}
        self._splitters: dict = {}
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_gguf_metadata(cls, metadata: dict) -> GGUFBPETokenizer:
        """The tokenizer a GGUF file's metadata describes (``GGUFReader(path).metadata``)."""
        model = metadata.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(
                f"the GGUF tokenizer is of kind {model!r}; lmcore reads the byte-level BPE "
                "ones ('gpt2'), not SentencePiece ('llama') vocabularies"
            )
        types = metadata.get("tokenizer.ggml.token_type")
        return cls(
            metadata["tokenizer.ggml.tokens"],
            metadata["tokenizer.ggml.merges"],
            None if types is None else list(types),
            metadata.get("tokenizer.ggml.pre", "gpt2"),
            metadata.get("tokenizer.ggml.bos_token_id"),
            metadata.get("tokenizer.ggml.eos_token_id"),
        )

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Ids of one chunk: join the adjacent pair of lowest merge rank (leftmost first)
        until no pair has a merge. A heap of ``(rank, position)`` over a linked list keeps
        this O(n log n), as :func:`~lmcore.tokenizers.bpe.merge_long` does."""
        ids = [self.byte_ids[b] for b in chunk.encode("utf-8")]
        ids = [i for i in ids if i >= 0]  # bytes without a token are dropped
        n, ranks = len(ids), self.ranks
        if n < 2:
            return ids
        tokens: list[int | None] = list(ids)
        nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
        heap = [(ranks[p][0], i) for i, p in enumerate(zip(ids, ids[1:])) if p in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i]
            if tokens[i] is None or j >= n or ranks.get((tokens[i], tokens[j]), (-1,))[0] != rank:
                continue  # the pair changed since it was pushed
            tokens[i], tokens[j] = ranks[(tokens[i], tokens[j])][1], None
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0 and (tokens[prv[i]], tokens[i]) in ranks:
                heapq.heappush(heap, (ranks[(tokens[prv[i]], tokens[i])][0], prv[i]))
            if nxt[i] < n and (tokens[i], tokens[nxt[i]]) in ranks:
                heapq.heappush(heap, (ranks[(tokens[i], tokens[nxt[i]])][0], i))
        return [t for t in tokens if t is not None]

    def encode_chat(
        self, messages: list[dict], add_generation_prompt: bool = True, **options
    ) -> list[int]:
        """Ids of a conversation laid out by :func:`apply_chat_template`.

        Example:
            >>> tok = GGUFBPETokenizer(["<|im_start|>", "<|im_end|>", "Ċ", "a"], [],
            ...                        token_types=[3, 3, 1, 1])
            >>> tok.encode_chat([{"role": "a", "content": "a"}], system_default=None)[:4]
            [0, 3, 2, 3]
        """
        return self.encode(apply_chat_template(messages, add_generation_prompt, **options), "all")

    def _settings(self) -> dict:
        return {
            "tokens": self.tokens,
            "merges": [" ".join(m) for m in self.merge_list],
            "token_types": self.token_types,
            "pre": self.pre,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        }

    @classmethod
    def _from_settings(cls, data: dict) -> GGUFBPETokenizer:
        return cls(
            data["tokens"], data["merges"], data["token_types"], data["pre"],
            data["bos_token_id"], data["eos_token_id"],
        )  # fmt: skip

    def __eq__(self, other) -> bool:
        return isinstance(other, GGUFBPETokenizer) and self._settings() == other._settings()

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"GGUFBPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merge_list)}, "
            f"pre={self.pre!r}, special_tokens={len(self.special_tokens)})"
        )


def apply_chat_template(
    messages: list[dict],
    add_generation_prompt: bool = True,
    system_default: str | None = SMOLLM_SYSTEM,
) -> str:
    """A conversation as the text SmolLM2-Instruct was tuned on (ChatML): each message
    ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, then ``<|im_start|>assistant\\n`` when
    ``add_generation_prompt`` asks the model to answer. As the Jinja template stored in
    the GGUF file (``tokenizer.chat_template``) does, a conversation that does not open
    with a system message gets ``system_default`` first (None: no system message).

    Example:
        >>> print(apply_chat_template([{"role": "system", "content": "Be brief."},
        ...                            {"role": "user", "content": "Hi"}]), end="")
        <|im_start|>system
        Be brief.<|im_end|>
        <|im_start|>user
        Hi<|im_end|>
        <|im_start|>assistant
    """
    parts = []
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise ValueError(
                f"message {k} must be a dict with 'role' and 'content', got {message!r}"
            )
        if k == 0 and message["role"] != "system" and system_default is not None:
            parts.append(f"<|im_start|>system\n{system_default}<|im_end|>\n")
        parts.append(f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)
