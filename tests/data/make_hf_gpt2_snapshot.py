"""Regenerate tests/data/hf_gpt2/: two tiny GPT-2 checkpoints written by `transformers`
itself, and the logits `transformers` computes from them.

tests/test_gpt_pretrained.py loads both directories with ``GPT.from_pretrained`` and checks
lmcore's logits against these, so the interchange with Hugging Face stays tested where
`transformers` and `torch` are not installed (they are not lmcore dependencies). Nothing
here imports lmcore: the expected numbers come from the reference library alone.

Run from the repository root, in an environment with `torch` and `transformers`:

    python -m pip install torch transformers
    python tests/data/make_hf_gpt2_snapshot.py

It writes (about 30 kB in all):

    tests/data/hf_gpt2/tied_bfloat16/    GPT2LMHeadModel.save_pretrained of a model in bfloat16:
                                         names with the "transformer." prefix, no lm_head.weight
                                         (tied to wte), width 12 with 3 heads, 2 layers
    tests/data/hf_gpt2/untied_float32/   the same in float32 with tie_word_embeddings=False, so
                                         lm_head.weight is stored; 2 heads, 1 layer
    tests/data/hf_gpt2/expected.npz      ids (2, 8); logits_<name> (2, 8, 29) from transformers
                                         in float32 after loading each directory back; the
                                         transformers and torch versions that made them

The weights are GPT-2's initialization plus N(0, 0.2²) noise (LayerNorm weights around 1),
so the logits differ clearly from token to token. The seed is fixed; a rerun with other
versions may differ in the last bits, which the tests' tolerance (1e-5) absorbs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

HERE = Path(__file__).resolve().parent / "hf_gpt2"
VOCAB, POSITIONS = 29, 8
CHECKPOINTS = {  # name: (GPT2Config settings, dtype written)
    "tied_bfloat16": (dict(n_embd=12, n_head=3, n_layer=2), torch.bfloat16),
    "untied_float32": (dict(n_embd=12, n_head=2, n_layer=1, tie_word_embeddings=False), None),
}


def tiny_model(settings: dict, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=POSITIONS, bos_token_id=None, eos_token_id=None, **settings
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                parameter.fill_(1.0).add_(0.2 * torch.randn_like(parameter))
    return model


def main() -> None:
    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir(parents=True)
    ids = torch.randint(0, VOCAB, (2, POSITIONS), generator=torch.Generator().manual_seed(0))
    expected = {
        "ids": ids.numpy(),
        "transformers_version": np.array(transformers.__version__),
        "torch_version": np.array(torch.__version__),
    }
    for seed, (name, (settings, dtype)) in enumerate(CHECKPOINTS.items()):
        model = tiny_model(settings, seed)
        if dtype is not None:
            model = model.to(dtype)
        model.save_pretrained(HERE / name)
        # The logits of what was written, read back as transformers reads it, in float32.
        reread = GPT2LMHeadModel.from_pretrained(HERE / name).float().eval()
        with torch.no_grad():
            expected[f"logits_{name}"] = reread(ids).logits.numpy()
    np.savez_compressed(HERE / "expected.npz", **expected)
    for path in sorted(HERE.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
