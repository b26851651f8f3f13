"""Regenerate tests/data/hf_decoding/: what Hugging Face `transformers` decides when it
decodes, for tests/test_decoding.py to check lmcore's decoding against where neither
`transformers` nor `torch` is installed (they are not lmcore dependencies). Nothing here
imports lmcore: the expected numbers come from the reference library alone.

Run from the repository root, in an environment with `torch` and `transformers`:

    python -m pip install torch transformers
    python tests/data/make_hf_decoding_snapshot.py

It writes (about 20 kB in all):

    tests/data/hf_decoding/filters.npz   logits (4, 24) and input_ids (4, 6), float32, and
                                         what transformers' logits processors make of them:
                                         top_k_<k> (TopKLogitsWarper), top_p_<p>
                                         (TopPLogitsWarper, min_tokens_to_keep 1; and
                                         top_p_<p>_keep3 with 3), penalty_<x>
                                         (RepetitionPenaltyLogitsProcessor)
    tests/data/hf_decoding/tiny_gpt2/    GPT2LMHeadModel.save_pretrained of a tiny GPT-2
                                         (vocabulary 29, 16 positions, width 8, 2 heads,
                                         2 layers), float32
    tests/data/hf_decoding/cases.json    prompts, settings and the ids that
                                         GPT2LMHeadModel.generate returns from tiny_gpt2:
                                         greedy (with and without a repetition penalty and
                                         an end-of-sequence id) and beam search (beams,
                                         length penalties, early stopping, end-of-sequence
                                         ids, a repetition penalty); the versions used

The weights are GPT-2's initialization plus N(0, 0.5²) noise (LayerNorm weights around
1), so that next-token probabilities differ clearly and no search meets a near tie.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

HERE = Path(__file__).resolve().parent / "hf_decoding"
VOCAB, POSITIONS = 29, 16
TOP_K = (1, 3, 10)
TOP_P = (0.1, 0.5, 0.9, 0.99)
PENALTIES = (0.7, 1.3, 2.0)
PAD = 1  # transformers reads a pad id of 0 as "none" in beam search


def filters() -> dict:
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(4, 24)) * 2).astype(np.float32)
    input_ids = rng.integers(0, 24, size=(4, 6))
    scores, ids = torch.from_numpy(logits), torch.from_numpy(input_ids)
    out = {"logits": logits, "input_ids": input_ids}
    for k in TOP_K:
        out[f"top_k_{k}"] = TopKLogitsWarper(k)(ids, scores.clone()).numpy()
    for p in TOP_P:
        out[f"top_p_{p}"] = TopPLogitsWarper(p)(ids, scores.clone()).numpy()
        out[f"top_p_{p}_keep3"] = TopPLogitsWarper(p, min_tokens_to_keep=3)(
            ids, scores.clone()
        ).numpy()
    for x in PENALTIES:
        out[f"penalty_{x}"] = RepetitionPenaltyLogitsProcessor(x)(ids, scores.clone()).numpy()
    return out


def tiny_model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=POSITIONS,
        n_embd=8,
        n_head=2,
        n_layer=2,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                parameter.fill_(1.0).add_(0.2 * torch.randn_like(parameter))
    return model


def cases(model: GPT2LMHeadModel) -> list[dict]:
    prompts = [[3, 17, 5], [22, 0, 9]]
    settings = [dict(num_beams=1)]
    settings.append(dict(num_beams=1, repetition_penalty=1.5))
    for beams in (2, 3, 5):
        settings.append(dict(num_beams=beams))
    for penalty in (0.0, 2.0, -1.0):
        settings.append(dict(num_beams=3, length_penalty=penalty))
    settings.append(dict(num_beams=3, repetition_penalty=1.8))
    settings.append(dict(num_beams=4, early_stopping=True))
    settings.append(dict(num_beams=4, early_stopping="never", length_penalty=1.5))
    input_ids = torch.tensor(prompts)
    results = []
    for setting in settings:
        setting = {
            "max_new_tokens": 10,
            "length_penalty": 1.0,
            "early_stopping": False,
            "repetition_penalty": 1.0,
            **setting,
        }
        runs = [dict(setting, eos_token_id=None)]
        if "eos_token_id" not in setting:
            # End-of-sequence ids that the search meets: two tokens of its own output.
            plain = _generate(model, input_ids, {**setting, "eos_token_id": None})
            first = int(plain[0, 5])
            second = next((int(t) for t in plain[1, 3:] if t != first), first + 1)
            runs.append(dict(setting, eos_token_id=[first, second]))
        for run in runs:
            out = _generate(model, input_ids, run)
            results.append(
                {**run, "prompts": prompts, "pad_token_id": PAD, "expected": out.tolist()}
            )
    return results


def _generate(model, input_ids, setting: dict) -> np.ndarray:
    with torch.no_grad():
        out = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            num_beams=setting["num_beams"],
            max_new_tokens=setting["max_new_tokens"],
            length_penalty=setting["length_penalty"],
            early_stopping=setting["early_stopping"],
            repetition_penalty=setting["repetition_penalty"],
            eos_token_id=setting["eos_token_id"],
            pad_token_id=PAD,
        )
    return out.numpy()


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    np.savez_compressed(HERE / "filters.npz", **filters())
    model = tiny_model()
    model.save_pretrained(HERE / "tiny_gpt2")
    snapshot = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "cases": cases(model),
    }
    (HERE / "cases.json").write_text(json.dumps(snapshot, indent=1) + "\n")
    for path in sorted(HERE.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
