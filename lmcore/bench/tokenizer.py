"""Tokenizer benchmark: lmcore's byte-level BPE beside Hugging Face ``tokenizers`` and tiktoken.

Three jobs on Shakespeare, each run by lmcore and, when installed, by a reference:

1. train a byte-level BPE to 4,096 tokens on the training split (HF ``BpeTrainer``
   with the ``ByteLevel`` pre-tokenizer, which uses GPT-2's regex, and all 256
   bytes as initial alphabet);
2. encode the validation split with the tokenizer just trained (HF encodes with its own);

HF gets the texts as a list of lines (``encode_batch`` to encode), which lets it
use every core; on Shakespeare this cuts exactly the same chunks as the whole text.
3. encode the validation split with GPT-2's ranks (tiktoken, built from lmcore's
   vendored files).

Encoding timings start from an empty chunk cache each time. ``quick=True`` uses
slices of the texts and a 1,024-token vocabulary.

Example:
    $ lmcore bench tokenizer
"""

from __future__ import annotations

from lmcore.bench.common import best_of, print_table
from lmcore.tokenizers import GPT2_PATTERN, BPETokenizer, gpt2
from lmcore.tokenizers.gpt2 import ENDOFTEXT


def _hf_train(lines: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    return tok


def _tiktoken_gpt2():
    import tiktoken

    tok = gpt2()
    ranks = {b: i for i, b in tok.vocab.items() if i != tok.special_tokens[ENDOFTEXT]}
    return tiktoken.Encoding(
        name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=tok.special_tokens
    )


def _row(task, mb, lm_s, ref_name="", ref_s=None, lm_tokens=None, ref_tokens=None):
    row = {"task": task, "MB": mb, "lmcore s": lm_s, "lmcore MB/s": mb / lm_s}
    row["reference"] = ref_name or "(not installed)"
    row["ref s"] = ref_s if ref_s is not None else ""
    row["ref MB/s"] = mb / ref_s if ref_s is not None else ""
    row["lmcore/ref time"] = lm_s / ref_s if ref_s is not None else ""
    row["bytes/token"] = f"{mb * 1e6 / lm_tokens:.3f}" if lm_tokens else ""
    if ref_tokens:
        row["bytes/token"] += f" vs {mb * 1e6 / ref_tokens:.3f}"
    return row


def run(quick: bool = False) -> list[dict]:
    """Time the three jobs, print a table, and return its rows."""
    from lmcore.data import shakespeare

    train, val = shakespeare("train"), shakespeare("val")
    vocab_size = 4096
    if quick:
        train, val, vocab_size = train[:300_000], val[:100_000], 1024
    repeat = 1 if quick else 2
    train_mb, val_mb = len(train.encode()) / 1e6, len(val.encode()) / 1e6
    try:
        import tokenizers  # noqa: F401

        has_hf = True
    except ImportError:
        has_hf = False
    try:
        import tiktoken  # noqa: F401

        has_tiktoken = True
    except ImportError:
        has_tiktoken = False

    rows = []
    # 1. training
    lm_s = best_of(lambda: BPETokenizer.train(train, vocab_size), repeat)
    bpe = BPETokenizer.train(train, vocab_size)
    train_lines, val_lines = train.splitlines(keepends=True), val.splitlines(keepends=True)
    hf_s = best_of(lambda: _hf_train(train_lines, vocab_size), repeat) if has_hf else None
    hf = _hf_train(train_lines, vocab_size) if has_hf else None
    task = f"train BPE, vocab {vocab_size}"
    rows.append(_row(task, train_mb, lm_s, "HF tokenizers" if has_hf else "", hf_s))

    # 2. encoding with the trained tokenizer
    def encode_trained():
        bpe.clear_cache()
        return bpe.encode(val)

    lm_s = best_of(encode_trained, 3)
    hf_s = best_of(lambda: hf.encode_batch(val_lines), 3) if has_hf else None
    rows.append(
        _row(
            "encode val, trained BPE",
            val_mb,
            lm_s,
            "HF tokenizers" if has_hf else "",
            hf_s,
            len(bpe.encode(val)),
            sum(len(e.ids) for e in hf.encode_batch(val_lines)) if has_hf else None,
        )
    )

    # 3. GPT-2's ranks
    g = gpt2()

    def encode_gpt2():
        g.clear_cache()
        return g.encode(val)

    lm_s = best_of(encode_gpt2, 3)
    ref_s, ref_tokens = None, None
    if has_tiktoken:
        enc = _tiktoken_gpt2()
        ref_s = best_of(lambda: enc.encode_ordinary(val), 3)
        ref_tokens = len(enc.encode_ordinary(val))
    rows.append(
        _row(
            "encode val, GPT-2 ranks",
            val_mb,
            lm_s,
            "tiktoken" if has_tiktoken else "",
            ref_s,
            len(g.encode(val)),
            ref_tokens,
        )
    )
    title = f"Tokenizers on Shakespeare ({'quick' if quick else 'full'} run; best of {repeat}-3)"
    print_table(rows, title)
    return rows
