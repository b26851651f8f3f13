"""Regenerate tests/data/peft_lora/: a LoRA adapter written by Hugging Face PEFT itself,
and the logits PEFT computes with it, so lmcore's reading of PEFT's adapter layout stays
tested where `peft`, `torch` and `transformers` are not installed (they are not lmcore
dependencies). Nothing here imports lmcore.

The base model is tests/data/hf_gpt2/untied_float32 (a tiny GPT-2, width 12, 1 layer,
vocabulary 29, written by `transformers`). Run from the repository root, in an
environment with `torch`, `transformers` and `peft`:

    python tests/data/make_peft_lora_snapshot.py

It writes (about 10 kB in all):

    tests/data/peft_lora/adapter_config.json        PEFT's LoraConfig: r=2, lora_alpha=6,
                                                    target_modules c_attn, c_proj, c_fc
    tests/data/peft_lora/adapter_model.safetensors  base_model.model.transformer.h.0.<module>
                                                    .lora_A.weight (r, in), .lora_B.weight (out, r)
    tests/data/peft_lora/expected.npz               ids (2, 8), logits (2, 8, 29) with the adapter,
                                                    merged_c_attn (12, 36): c_attn's Conv1D weight
                                                    (in, out) after merge_and_unload; versions

The adapter's weights are random (``init_lora_weights=False``: B is not zero), so the
adapter changes the logits clearly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import GPT2LMHeadModel

DATA = Path(__file__).resolve().parent
BASE, HERE = DATA / "hf_gpt2" / "untied_float32", DATA / "peft_lora"


def main() -> None:
    torch.manual_seed(0)
    base = GPT2LMHeadModel.from_pretrained(BASE).eval()
    config = LoraConfig(
        r=2,
        lora_alpha=6,
        target_modules=["c_attn", "c_proj", "c_fc"],
        lora_dropout=0.0,
        init_lora_weights=False,
        fan_in_fan_out=True,
    )
    model = get_peft_model(base, config).eval()
    HERE.mkdir(exist_ok=True)
    model.save_pretrained(HERE)
    (HERE / "README.md").unlink(missing_ok=True)  # PEFT's model card: nothing to test
    settings = json.loads((HERE / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = (
        "tests/data/hf_gpt2/untied_float32"  # not this machine's path
    )
    (HERE / "adapter_config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    ids = np.random.default_rng(0).integers(0, base.config.vocab_size, (2, 8))
    with torch.no_grad():
        logits = model(torch.tensor(ids)).logits.numpy()
        merged = model.merge_and_unload()
        merged_c_attn = merged.transformer.h[0].attn.c_attn.weight.numpy()
    np.savez(
        HERE / "expected.npz",
        ids=ids,
        logits=logits.astype(np.float32),
        merged_c_attn=merged_c_attn.astype(np.float32),
        versions=np.array(
            [
                f"torch {torch.__version__}",
                f"transformers {transformers.__version__}",
                f"peft {peft.__version__}",
            ]
        ),
    )
    print(f"wrote {HERE}: logits {logits.shape}")


if __name__ == "__main__":
    main()
