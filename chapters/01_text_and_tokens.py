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
# # Text and tokens
#
# A language model never sees text. It sees a sequence of integers, each standing for a piece
# of text called a *token*, and it learns to predict the next integer from the ones before.
# Before a single parameter is trained, someone has decided what the pieces are, and that
# decision shapes everything after it: how long the sequences are, how large the output layer
# must be, which words the model can spell, and whether it can read Chinese or emoji at all.
#
# This chapter builds that decision from the ground up, on the text the whole book uses.
#
# **In this chapter you will**
#
# - load the book's corpus, Shakespeare's 38 plays, and see why whole plays are held out;
# - tokenize it by characters and by words, and meet the problem each one has;
# - see how Unicode code points and UTF-8 bytes let one alphabet of 256 symbols spell any text;
# - train a byte-level BPE tokenizer from scratch, merge by merge, and make training fast;
# - load GPT-2's real tokenizer and reproduce OpenAI's token ids exactly;
# - measure what a larger vocabulary buys: bytes per token on text the tokenizer never saw.

# %% tags=["hide-cell"]
# Set-up: install lmcore when it is missing (on Colab, say), then name the profile and device.
import importlib.util
import subprocess
import sys

REPOSITORY = "https://github.com/lmcore-book/language-models-from-scratch"
if importlib.util.find_spec("lmcore") is None:
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", f"lmcore @ git+{REPOSITORY}"]
    )

# %%
import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np

import lmcore
from lmcore import config, data
from lmcore.notebook import show
from lmcore.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, gpt2

PROFILE = config.profile()
lmcore.notebook.setup()
# %% [markdown]
# ## The corpus: Shakespeare's plays
#
# The book trains on the 38 plays of Shakespeare, in the layout that Karpathy's char-rnn made
# famous {cite}`karpathy2015`: the speaker's name and a colon on one line, the speech below,
# a blank line after it. `lmcore.data` reads the plays from a file that ships with the package
# (checked against its checksum each time) and converts them; here is the parser at work on
# the opening of *Hamlet*:

# %%
print(data.play("hamlet").text[:400])

# %% [markdown]
# A model is only worth what it does on text it has not seen, so we need held-out data. It
# would be easy to hold out every tenth line, but then the validation text would share its
# characters, scenes and running jokes with the training text, and we would overestimate how
# well the model generalises. Instead, **whole plays** are held out: three for validation and
# three for testing, each trio drawn from three different genres.

# %%
rows = []
for split in ("train", "val", "test"):
    plays = data.split_plays(split)
    text = data.shakespeare(split)
    rows.append((split, len(plays), len(text), len(text.split()), len(set(text))))
    print(
        f"{split:5s} {len(plays):2d} plays {len(text):>10,} characters {len(text.split()):>9,} words"
    )
print(
    "held out:",
    ", ".join(f"{p.title} ({p.genre})" for p in data.split_plays("val") + data.split_plays("test")),
)
train_text, val_text = data.shakespeare("train"), data.shakespeare("val")
assert len(data.plays()) == 38 and rows[0][1] == 32
assert 4_000_000 < len(train_text) < 4_200_000

# %% [markdown]
# The training split holds about 4.1 million characters, close to the 1.1 million of
# tiny-shakespeare times four; validation and test hold about 350 thousand each. Every play
# also carries its title and genre, which chapter 7 uses to fine-tune a genre classifier.

# %% [markdown]
# ## Characters
#
# The simplest tokenizer gives each distinct character an id. How many are there?

# %%
counts = Counter(train_text)
alphabet = sorted(counts)
print(f"{len(alphabet)} distinct characters:", repr("".join(alphabet)))
assert len(alphabet) <= 80

fig, ax = plt.subplots(figsize=(9, 3))
top = counts.most_common()
ax.bar(range(len(top)), [n / len(train_text) for _, n in top])
ax.set_xticks(range(len(top)), [repr(c)[1:-1] for c, _ in top], fontsize=6, rotation=90)
ax.set_yscale("log")
ax.set_ylabel("share of characters")
ax.set_title("Characters of the training plays, most frequent first")
plt.show()

# %% [markdown]
# Fewer than eighty symbols: letters, digits, punctuation, space and newline, and a rare em
# dash. Space alone is about one character in six; `z`, `X` and `Q` appear a few hundred
# times each. A character tokenizer is tiny and never meets a word it cannot spell, which is
# why char-rnn used it. `CharTokenizer` in `lmcore` builds its vocabulary from a text:

# %%
chars = CharTokenizer(train_text)
ids = chars.encode("To be, or not to be")
print(ids)
print(repr(chars.decode(ids)))
assert chars.decode(ids) == "To be, or not to be"

# %% [markdown]
# But "any word" only means any word spelled with *these* characters. The plays contain no
# accented letters, so a modern name like *Zoë* is a problem. What should a tokenizer do with
# a symbol it has never seen? There are two honest answers, and `lmcore` makes the caller
# choose: fail with an error that names the symbol (the default, because silently losing
# text is the worse bug), or map it to a reserved `<unk>` token.

# %%
try:
    chars.encode("Zoë")
except ValueError as err:
    print("error:", err)
    assert "ë" in str(err)

chars_unk = CharTokenizer(train_text, unk="<unk>")
print(chars_unk.encode("Zoë"), "->", repr(chars_unk.decode(chars_unk.encode("Zoë"))))

# %% [markdown]
# The price of characters is length. *To be, or not to be* is 19 tokens, and a model must
# learn spelling, words and grammar from sequences five or six times longer than a sentence
# has words. Each prediction also carries very little: after `Th`, the next character is
# almost surely `e`, `a`, `i`, `o` or `y`.

# %% [markdown]
# ## Words
#
# The opposite choice makes each word a token. `WordTokenizer` splits text into words and
# punctuation marks with a regular expression, and keeps the vocabulary of its training text:

# %%
words = WordTokenizer(train_text, unk="<unk>")
print("vocabulary:", f"{words.vocab_size:,}", "word types")
line = "Now is the winter of our discontent"
print(words.encode(line))

# %% [markdown]
# A word vocabulary is large, and it is never large enough. Word frequencies follow Zipf's
# law: the $r$-th most common word occurs about $1/r$ as often as the most common one, so a
# few hundred words make up most of the text while tens of thousands occur once or twice.
# Held-out plays keep bringing new ones: names, coinages, rare inflections.

# %%
from lmcore.tokenizers.word import tokenize

train_words = Counter(tokenize(train_text))
val_tokens = tokenize(val_text)
unseen = [w for w in val_tokens if w not in train_words]
oov_rate = len(unseen) / len(val_tokens)
print(
    f"{len(train_words):,} word types in training; {oov_rate:.2%} of validation words were never seen"
)
print("some of them:", sorted(set(unseen))[:12])
assert 0.02 < oov_rate < 0.04

freq = np.array(sorted(train_words.values(), reverse=True))
rank = np.arange(1, len(freq) + 1)
fig, ax = plt.subplots()
ax.loglog(rank, freq, label="training plays")
ax.loglog(rank, freq[0] / rank, "--", label="Zipf: $f_1 / r$")
ax.set_xlabel("rank $r$")
ax.set_ylabel("count")
ax.set_title("Word frequency against rank")
ax.legend()
plt.show()
hapax = (freq == 1).mean()
print(f"{hapax:.0%} of word types occur exactly once")
assert 0.3 < hapax < 0.5

# %% [markdown]
# About three validation words in a hundred were never seen in training, and every one of them
# would become `<unk>`: the model could neither read nor write it. Two word types in five
# occur exactly once, so each is a row of the embedding table that gets one training example.
# Characters have no unknowns but long sequences; words have short sequences but unknowns and
# a huge, mostly starved vocabulary. We want something in between, and we want it to cover
# *every* text, not just Shakespeare's.

# %% [markdown]
# ## Unicode code points and UTF-8 bytes
#
# Text in Python is a sequence of Unicode *code points* {cite}`unicode15`: integers from 0 to
# 0x10FFFF, one per character (roughly). There are about 150,000 assigned, far too many to give
# each a token, and new ones are added every year. On disk and on the wire, code points are
# written as UTF-8, which spends one byte on ASCII, two on most European accents, three on
# most Chinese characters and four on emoji:

# %%
for ch in ["e", "ë", "中", "🙂"]:
    b = ch.encode("utf-8")
    print(f"{ch!r:6} code point U+{ord(ch):04X} -> UTF-8 {len(b)} byte(s): {list(b)}")
assert [len(c.encode()) for c in ["e", "ë", "中", "🙂"]] == [1, 2, 3, 4]

# %% [markdown]
# Bytes are the universal alphabet: 256 symbols spell any string in any language, so a
# tokenizer that starts from bytes can never meet an unknown symbol. Shakespeare in UTF-8 is
# almost entirely one byte per character, so bytes alone would be as long as characters. The
# idea of byte-pair encoding is to start from bytes and *learn* longer tokens from data.

# %% [markdown]
# ## Byte-pair encoding, merge by merge
#
# Byte-pair encoding began as a compression algorithm {cite}`gage1994` and became the
# standard way to build subword vocabularies {cite}`sennrich2016`. Training is one loop:
#
# 1. write the text as bytes, ids 0–255;
# 2. count every adjacent pair of ids;
# 3. give the most frequent pair a new id, $256 + k$ for the $k$-th merge, and replace every
#    occurrence of the pair by it;
# 4. repeat until the vocabulary has the size you asked for.
#
# The vocabulary is the 256 bytes plus one token per merge, and the list of merges *is* the
# tokenizer. Here is the loop in `lmcore`, in its plainest form:

# %%
from lmcore.tokenizers import bpe_train

show(bpe_train.train_naive)

# %% [markdown]
# Before counting, GPT-2 cuts the text into chunks with a regular expression, its
# *pre-tokenizer* {cite}`radford2019`, and merges never cross a chunk boundary. Without it,
# the most frequent pairs would glue words to the punctuation and spaces around them
# (`e,` and `d.` and `. ` become tokens), wasting the vocabulary on combinations. The
# pattern keeps letters with letters, digits with digits, and a leading space with the word
# that follows it:

# %%
from lmcore.tokenizers.pretokenize import GPT2_PATTERN, split

print(GPT2_PATTERN)
print(split("KING RICHARD III:\nNow is the winter of our discontent, isn't it? 1592!"))

# %% [markdown]
# Let us watch the first merges on one speech. Each line shows the pair that was merged, as
# the bytes it stands for, and the new token:

# %%
speech = data.play("richard-iii").text[:2000]
tiny = BPETokenizer.train(speech, vocab_size=256 + 12)
for rank, ((a, b), new) in enumerate(tiny.merges.items()):
    print(
        f"merge {rank:2d}: {tiny.vocab[a]!r:>8} + {tiny.vocab[b]!r:<8} -> id {new} = {tiny.vocab[new]!r}"
    )
merged = [tiny.vocab[new] for new in tiny.merges.values()]  # the token each merge made
(left_2, _), (left_11, _) = list(tiny.merges)[2], list(tiny.merges)[11]
assert merged[0] == b" t" and merged[2] == b" th" and tiny.vocab[left_2] == merged[0]
assert merged[11] == b" the" and tiny.vocab[left_11] == merged[2]

# %% [markdown]
# The first merges join a space to the letters that most often start a word (`' t'`), then
# build the commonest words, one pair at a time. Merges build on merges: merge 2 extends the
# token of merge 0, `' t'`, to `' th'`, and merge 11 extends that to `' the'`.
#
# Encoding a new text replays the merges: within each chunk, repeatedly find the adjacent pair
# whose merge was learned *earliest* and apply it, until no learned pair is left. Decoding
# concatenates the bytes of the tokens and decodes UTF-8.

# %% [markdown]
# ### Making training fast
#
# The plain loop recounts every pair of the whole corpus after each merge. With $M$ merges and
# a corpus of $N$ chunk occurrences, that is $O(MN)$ work, almost all of it wasted: a merge of
# `(' ', 't')` changes only the chunks that contain a space before a `t`, and only the counts
# of the pairs around it.
#
# `train_incremental` exploits that. It counts each *distinct* chunk once, weighted by its
# frequency (Shakespeare's 4 million characters hold only tens of thousands of distinct
# chunks), keeps an index from each pair to the chunks that contain it, and after a merge
# rewrites only those chunks, subtracting the counts of the pairs they lost and adding the
# counts of the pairs they gained. The best pair comes from a heap; an entry whose count has
# changed since it was pushed is simply skipped when it surfaces. The merges are the same, by
# construction, and the tests check that they are identical:

# %%
sample = train_text[: config.pick(quick=60_000, standard=300_000)]
num_merges = config.pick(quick=150, standard=400)
chunks = bpe_train.count_words(sample)
start = time.perf_counter()
naive = bpe_train.train_naive(chunks, num_merges)
t_naive = time.perf_counter() - start
start = time.perf_counter()
fast = bpe_train.train_incremental(chunks, num_merges)
t_fast = time.perf_counter() - start
print(f"{len(sample):,} characters, {len(chunks):,} distinct chunks, {num_merges} merges")
print(
    f"naive {t_naive:.2f} s, incremental {t_fast:.3f} s: {t_naive / t_fast:.0f}x faster, same merges: {naive == fast}"
)
assert naive == fast and t_fast < t_naive

# %% [markdown]
# Now the real thing: a byte-level BPE on the training plays. The benchmark command
# `lmcore bench tokenizer` times the same job side by side with Hugging Face's Rust trainer.

# %%
VOCAB = config.pick(quick=4096, standard=16384)
bpe_text = train_text[: config.pick(quick=2_000_000, standard=len(train_text))]
start = time.perf_counter()
bpe = BPETokenizer.train(
    bpe_text, vocab_size=VOCAB, special_tokens=["<|endoftext|>"], progress=True
)
print(
    f"trained {bpe.vocab_size:,} tokens on {len(bpe_text):,} characters in {time.perf_counter() - start:.1f} s"
)
longest = sorted(bpe.vocab.values(), key=len)[-8:]
print("longest tokens:", longest)

# %% [markdown]
# The longest tokens are whole words and names that recur throughout the plays. Encoding and
# decoding, with the special token `<|endoftext|>` used to mark where one document ends.
# A special token never comes out of ordinary text by accident: encoding a string that
# contains one is an error unless the caller allows it.

# %%
ids = bpe.encode("ROMEO:\nBut, soft! what light through yonder window breaks?")
print(ids)
print([bpe.decode([i]) for i in ids])
doc = "HAMLET:\nThe rest is silence.\n<|endoftext|>"
print(bpe.encode(doc, allowed_special="all")[-3:])
try:
    bpe.encode(doc)
except ValueError as err:
    print("error:", err)

# %% [markdown]
# A tokenizer is worth saving with the model trained on it; `save` writes the merges and the
# special tokens, and `load` gives back a tokenizer that encodes identically:

# %%
import tempfile
from pathlib import Path

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "shakespeare.bpe"
    bpe.save(path)
    again = BPETokenizer.load(path)
assert again.encode(val_text[:20_000]) == bpe.encode(val_text[:20_000])

# %% [markdown]
# ## GPT-2's tokenizer, exactly
#
# GPT-2 {cite}`radford2019` uses exactly this algorithm, trained on 40 GB of web text to
# 50,000 merges, plus `<|endoftext|>`: 50,257 tokens. OpenAI published the merges and the ids
# (`vocab.bpe` and `encoder.json`), and `lmcore` ships them with their checksums. The only
# wrinkle is bookkeeping: GPT-2 numbers its 256 byte tokens in its own order and writes bytes
# as printable characters in its files, so `gpt2()` translates the files into the same
# merges-and-ids form as our own tokenizer. The test suite compares it with OpenAI's
# `tiktoken` on hundreds of strings; here is the canonical check:

# %%
enc = gpt2()
print(enc.encode("Hello world"))
assert enc.encode("Hello world") == [15496, 995]
assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]

# %% [markdown]
# What does a tokenizer trained on the web make of Shakespeare, and of other things?

# %%
samples = {
    "Shakespeare": "O Romeo, Romeo! wherefore art thou Romeo?",
    "modern": "The quarterly revenue exceeded analysts' expectations.",
    "code": "def f(x):\n    return x ** 2  # square",
    "Chinese": "生存还是毁灭，这是一个问题。",
    "emoji": "Good night, good night! 🌙✨",
}
for name, s in samples.items():
    toks = enc.encode(s)
    print(
        f"{name:12s} {len(s.encode()):3d} bytes -> {len(toks):3d} tokens: {[enc.decode([t]) for t in toks][:12]}"
    )
    assert enc.decode(toks) == s

# %% [markdown]
# English, modern or old, costs about one token per word, because the web is mostly English.
# Chinese costs about one token per character or more, and an emoji can take several tokens
# whose bytes are not valid UTF-8 on their own (shown as �): the tokenizer is a byte-level
# code, and only the whole sequence must decode. Yet every string round-trips exactly:
# byte-level BPE cannot meet an unknown symbol. The tests check `decode(encode(s)) == s` on
# thousands of random Unicode strings with the property-based testing library Hypothesis.

# %% [markdown]
# ## What a larger vocabulary buys
#
# A larger vocabulary means shorter sequences, which makes every step of a Transformer
# cheaper and lets a fixed context window hold more text. It also means a larger embedding
# table and output layer, and rarer tokens, each seen fewer times in training. Let us measure
# the first half of that trade on text the tokenizer never saw: the validation plays.
#
# Because BPE merges are learned in order, the tokenizer with $V$ tokens is simply the first
# $V - 256$ merges of a larger one, so one training run gives the whole curve: the list of
# merges *is* the tokenizer, and `first_merges` builds one from a prefix of it.


# %%
def bytes_per_token(tokenizer, text):
    return len(text.encode("utf-8")) / len(tokenizer.encode(text))


def first_merges(tokenizer, vocab_size):
    return BPETokenizer(list(tokenizer.merges)[: vocab_size - 256], pattern=tokenizer.pattern)


sizes = [s for s in (256, 512, 1024, 2048, 4096, 8192, 16384) if s <= VOCAB]
compression = [bytes_per_token(first_merges(bpe, s), val_text) for s in sizes]
gpt2_compression = bytes_per_token(enc, val_text)
for s, c in zip(sizes, compression):
    print(f"vocab {s:5d}: {c:.2f} bytes per token")
print(f"GPT-2 (50,257, trained on web text): {gpt2_compression:.2f} bytes per token")

fig, ax = plt.subplots()
ax.semilogx(sizes, compression, "o-", base=2, label="BPE trained on the training plays")
ax.axhline(gpt2_compression, color="gray", ls="--", label="GPT-2's tokenizer (50,257)")
ax.set_xlabel("vocabulary size")
ax.set_ylabel("bytes per token (validation plays)")
ax.set_title("Compression against vocabulary size")
ax.legend()
plt.show()
assert compression[0] == 1.0 and all(np.diff(compression) > 0)
if VOCAB >= 8192:  # trained on all the training plays: 8,192 tokens match GPT-2's 50,257 here
    assert compression[sizes.index(8192)] > 0.98 * gpt2_compression

# %% [markdown]
# With only bytes, each token is one byte. The first few hundred merges pay the most: common
# letter pairs and short words. Every doubling of the vocabulary after that adds less, because
# the merges left are for rarer and rarer strings. Trained on all the training plays (the
# `standard` profile), 8,192 tokens compress the held-out plays as well as GPT-2's 50,257,
# and 16,384 do better: GPT-2 spends most of its vocabulary on the web's words, names and
# code, which Shakespeare never uses. A tokenizer is a model of its training text.

# %% [markdown]
# ### Tokens per play
#
# The same plays, counted by each tokenizer: characters, words (with punctuation as separate
# tokens), our BPE and GPT-2's.

# %%
table_plays = config.pick(
    quick=data.split_plays("val") + data.split_plays("test"),
    standard=data.plays(),
)
print(f"{'play':34s} {'split':5s} {'chars':>8s} {'words':>7s} {'BPE':>7s} {'GPT-2':>7s}")
held_out = {p.slug for s in ("val", "test") for p in data.split_plays(s)}
totals = np.zeros(4)
for p in table_plays:
    counts4 = np.array(
        [len(p.text), len(tokenize(p.text)), len(bpe.encode(p.text)), len(enc.encode(p.text))]
    )
    totals += counts4
    split_name = "held" if p.slug in held_out else "train"
    print(f"{p.title:34s} {split_name:5s} " + " ".join(f"{n:>7,}" for n in counts4))
print(f"{'total':40s} " + " ".join(f"{int(n):>7,}" for n in totals))
assert totals[0] > totals[2] > totals[1] and totals[3] > totals[1]
print(
    f"BPE needs {totals[2] / totals[1]:.2f} tokens per word token, {totals[2] / totals[3]:.2f} per GPT-2 token"
)
ours_vs_gpt2 = totals[2] / totals[3] - 1  # > 0: ours is longer
print(f"our BPE is {ours_vs_gpt2:+.1%} against GPT-2's ({PROFILE})")
if PROFILE == "quick":
    assert 0.05 < ours_vs_gpt2 < 0.15  # about 10 % longer
else:
    assert -0.12 < ours_vs_gpt2 < -0.04  # about 8 % shorter

# %% [markdown]
# Characters are the longest code, words the shortest, and BPE sits in between, much closer
# to words than to characters, with no unknown tokens at all. Whether our
# BPE or GPT-2's needs fewer tokens depends on the vocabulary size, as the plot showed: with
# 4,096 tokens (`quick`, six held-out plays) ours is about 10 % longer; with 16,384 (`standard`,
# all 38 plays, most of which it was trained on) about 8 % shorter.

# %% [markdown]
# ## Results
#
# | quantity | `quick` | `standard`, `full` |
# |---|---|---|
# | training text for BPE | first 2 M characters | all 4.1 M characters |
# | BPE vocabulary | 4,096 | 16,384 |
# | BPE training time (2 cores) | ≈ 1 s | ≈ 4 s |
# | validation bytes per token, our BPE | 2.97 at 4,096 | 3.27 at 8,192, 3.43 at 16,384 |
# | validation bytes per token, GPT-2 | 3.28 | 3.28 |
# | validation words never seen in training | 2.9 % | 2.9 % |
#
# The cell below prints this run's numbers, so you can compare.

# %%
print(
    f"profile {PROFILE}: vocab {VOCAB}, BPE {compression[-1]:.2f} bytes/token, GPT-2 {gpt2_compression:.2f}, unseen words {oov_rate:.2%}"
)

# %% [markdown]
# ## Summary
#
# - A language model reads integers; the tokenizer decides what each integer stands for.
# - Characters never meet unknown words but make long sequences; words make short sequences
#   but leave about 3 % of held-out words unknown (2.9 % in this chapter's runs, asserted
#   between 2 % and 4 %) and starve most of their vocabulary.
# - UTF-8 bytes spell any text with 256 symbols; byte-level BPE starts there and merges the
#   most frequent pairs, so it has no unknown symbols and learns its vocabulary from data.
# - Training BPE by updating pair counts incrementally, instead of recounting, gives the same
#   merges many times faster.
# - GPT-2's tokenizer is the same algorithm with OpenAI's merges; `lmcore.tokenizers.gpt2()`
#   reproduces its ids exactly.
# - Compression rises steeply over the first merges and slowly after; the vocabulary size is a
#   trade between sequence length and the size and training of the embedding table.
#
# What the chapter leaves out: BPE is not the only way to learn subwords. SentencePiece
# {cite}`kudo2018` treats the text as a raw stream (spaces included) and also offers a
# *unigram* model, which starts from a large vocabulary and prunes the pieces that least
# reduce the corpus's likelihood; Bostrom and Durrett {cite}`bostrom2020` found it closer to
# morphology than BPE and slightly better for pretraining. Many recent models (T5, Llama 2)
# use SentencePiece; GPT-2 and its descendants use byte-level BPE, the algorithm built here.
#
# The next chapter puts these tokens to work in the first language models of the book:
# counts of n-grams.

# %% [markdown]
# ## Exercises
#
# **1.** Without pre-tokenization, which merges does BPE learn first on the Richard III speech
# above? Train on the speech with a pattern that keeps the whole text as one chunk and compare.

# %% tags=["hide-cell"]
# Solution: a pattern that matches everything makes the whole speech one chunk.
whole = BPETokenizer.train(speech, vocab_size=256 + 12, pattern=r"[\s\S]+")
print([whole.vocab[256 + k] for k in range(12)])
# Merges now cross word boundaries: tokens such as b'e ' or b',\n' (a letter or punctuation
# glued to the space or newline after it) appear, which GPT-2's pattern forbids.
assert any(
    tok[:1].isalpha() and tok[-1:] in (b" ", b"\n")
    for tok in (whole.vocab[256 + k] for k in range(12))
)

# %% [markdown]
# **2.** GPT-2 encodes `"Romeo"` and `" Romeo"` differently. How many tokens does each take,
# and why does the leading space matter?

# %% tags=["hide-cell"]
# Solution: the pre-tokenizer attaches a leading space to the word, so " Romeo" (as it
# appears mid-sentence) is a frequent chunk in web text and got merges of its own; "Romeo"
# without the space (the start of a text) is rarer and is split into more pieces.
for s in ["Romeo", " Romeo"]:
    print(repr(s), [enc.decode([t]) for t in enc.encode(s)])
assert len(enc.encode(" Romeo")) <= len(enc.encode("Romeo"))

# %% [markdown]
# **3.** How many bytes per token does GPT-2 achieve on the Chinese sentence above, compared
# with the English one? What does that imply for the cost of running a model in Chinese?

# %% tags=["hide-cell"]
# Solution: Chinese characters are 3 bytes in UTF-8 and the web text GPT-2 was trained on
# is mostly English, so few Chinese byte sequences were merged: about one token per 1.5 bytes,
# against 5–7 for English. A Chinese text costs several times more tokens, so it fills the
# context window sooner and costs more compute per character.
zh = samples["Chinese"]
en = samples["modern"]
zh_bpt, en_bpt = bytes_per_token(enc, zh), bytes_per_token(enc, en)
print(f"Chinese {zh_bpt:.2f} bytes/token, English {en_bpt:.2f} bytes/token")
assert zh_bpt < en_bpt

# %% [markdown]
# **4.** A character tokenizer and a BPE with only the 256 byte tokens give the same sequence
# length on Shakespeare. On what kind of text would they differ, and which would be longer?

# %% tags=["hide-cell"]
# Solution: on any text with non-ASCII characters. UTF-8 spends 2–4 bytes on each, so the
# byte sequence is longer than the character sequence.
text = "Zoë said 你好 🙂"
bytes_only = first_merges(bpe, 256)
print(len(text), "characters,", len(bytes_only.encode(text)), "byte tokens")
assert len(bytes_only.encode(text)) == len(text.encode("utf-8")) > len(text)
