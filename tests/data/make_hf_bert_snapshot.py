"""Regenerate tests/data/hf_bert/: a tiny BertForMaskedLM checkpoint written by `transformers`
itself, and the hidden states, logits and loss `transformers` computes from it.

tests/test_bert.py loads the directory with ``BERT.from_pretrained`` and checks lmcore's
numbers against these, so the interchange with Hugging Face stays tested where
`transformers` and `torch` are not installed (they are not lmcore dependencies). Nothing
here imports lmcore: the expected numbers come from the reference library alone.

Run from the repository root, in an environment with `torch` and `transformers`:

    python -m pip install torch transformers
    python tests/data/make_hf_bert_snapshot.py

It writes (about 12 kB in all):

    tests/data/hf_bert/config.json          BertConfig: vocabulary 24, width 8 in 2 heads,
                                            2 layers, feed-forward width 16, 12 positions
    tests/data/hf_bert/model.safetensors    BertForMaskedLM.save_pretrained: "bert." and
                                            "cls.predictions." names, no decoder weight or
                                            bias (tied to the word embeddings and the bias)
    tests/data/hf_bert/expected.npz         input_ids, attention_mask (the second sequence
                                            padded), token_type_ids (two segments), labels
                                            (-100 but at a few positions), all (2, 10);
                                            hidden_states (2, 10, 8), the encoder's last;
                                            logits (2, 10, 24); loss; the transformers and
                                            torch versions that made them

The weights are BERT's initialization plus N(0, 0.2²) noise (LayerNorm weights around 1),
so the logits differ clearly from token to token. The seed is fixed; a rerun with other
versions may differ in the last bits, which the tests' tolerance absorbs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import BertConfig, BertForMaskedLM

HERE = Path(__file__).resolve().parent / "hf_bert"
SETTINGS = dict(
    vocab_size=24,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=12,
    type_vocab_size=2,
)
PAD = 0


def tiny_model(seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(pad_token_id=PAD, **SETTINGS)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
            if name.endswith("LayerNorm.weight"):
                parameter.fill_(1.0).add_(0.2 * torch.randn_like(parameter))
    return model


def inputs() -> dict:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, SETTINGS["vocab_size"], (2, 10), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    input_ids[1, 7:] = PAD
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    labels = torch.full_like(input_ids, -100)
    for row, column in ((0, 1), (0, 6), (1, 2), (1, 4)):
        labels[row, column] = input_ids[row, column]
        input_ids[row, column] = 3  # the mask token of this tiny vocabulary
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        labels=labels,
    )


def main() -> None:
    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir(parents=True)
    tiny_model().save_pretrained(HERE)
    # The numbers of what was written, read back as transformers reads it.
    model = BertForMaskedLM.from_pretrained(HERE).eval()
    batch = inputs()
    with torch.no_grad():
        hidden = model.bert(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        ).last_hidden_state
        output = model(**batch)
    np.savez_compressed(
        HERE / "expected.npz",
        **{name: value.numpy() for name, value in batch.items()},
        hidden_states=hidden.numpy(),
        logits=output.logits.numpy(),
        loss=output.loss.numpy(),
        transformers_version=np.array(transformers.__version__),
        torch_version=np.array(torch.__version__),
    )
    for path in sorted(HERE.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
