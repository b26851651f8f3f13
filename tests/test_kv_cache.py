"""The key-value cache: GPT generation with it chooses the same tokens as recomputing the
whole context every step (greedy and seeded sampling, float32 and float64, every kind of
position, prompts longer than the block), its logits agree with the full forward pass,
it records no graph, and the layers below it keep their positions straight."""

import numpy as np
import pytest

import lmcore
from lmcore.autograd import Tensor
from lmcore.generate import beam_search, generate
from lmcore.models import GPT, GPTConfig, RNNLanguageModel
from lmcore.nn.attention import KVCache, MultiHeadAttention
from lmcore.rng import manual_seed

SETTINGS = [
    dict(temperature=0),
    dict(seed=3),
    dict(seed=4, temperature=0.7, top_k=9, top_p=0.9, repetition_penalty=1.3),
]


def gpt(positional="learned", dtype="float32", block_size=12):
    manual_seed(0)
    config = GPTConfig(
        vocab_size=23, block_size=block_size, n_layer=2, n_head=2, n_embd=16, positional=positional
    )
    model = GPT(config, dtype=dtype)
    rng = np.random.default_rng(1)
    for parameter in model.parameters():  # larger than GPT-2's init: peaked predictions
        parameter.data[...] = rng.normal(0, 0.5, parameter.shape)
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rotary"])
def test_cached_generation_equals_recomputation(positional, dtype):
    model = gpt(positional, dtype)
    rng = np.random.default_rng(2)
    for length in (1, 5, 11, 12, 19):  # up to the block of 12, and past it
        prompt = rng.integers(0, 23, size=(3, length))
        for settings in SETTINGS:
            cached = generate(model, prompt, 20, **settings)
            recomputed = generate(model, prompt, 20, use_cache=False, **settings)
            np.testing.assert_array_equal(cached, recomputed, err_msg=f"{length} {settings}")
            assert cached.shape == (3, length + 20)


def test_generation_with_the_cache_is_not_trivial():
    model = gpt()
    prompt = np.array([[1, 2, 3]])
    greedy = generate(model, prompt, 20, temperature=0)[0, 3:]
    assert len(set(greedy.tolist())) >= 3  # not one token over and over
    sampled = [generate(model, prompt, 20, seed=s)[0, 3:] for s in range(3)]
    assert not np.array_equal(sampled[0], sampled[1])


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rotary"])
def test_cached_logits_agree_with_the_full_forward_pass(positional):
    model = gpt(positional, "float64", block_size=10)
    ids = np.random.default_rng(3).integers(0, 23, size=(2, 25))
    state = None
    with lmcore.no_grad():
        for end in range(4, 26):  # the sequence grows one token a step, past the block
            logits, state = model.next_token_logits(ids[:, :end], state)
            context = ids[:, max(0, end - 10) : end]
            np.testing.assert_allclose(logits, model(context).numpy()[:, -1], atol=1e-10)
            assert state.get_seq_length() == min(end, 10)


def test_prefill_then_steps_fill_the_cache_position_by_position():
    model = gpt()
    cache = model.new_cache(batch_size=2)
    ids = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    with lmcore.no_grad():
        model(ids[:, :3], past_key_values=cache)
        assert [cache.get_seq_length(i) for i in range(2)] == [3, 3]
        step = model(ids[:, 3:4], past_key_values=cache)
        step = model(ids[:, 4:5], past_key_values=cache)
        full = model(ids)
    assert cache.get_seq_length() == 5
    np.testing.assert_allclose(step.numpy()[:, -1], full.numpy()[:, -1], rtol=1e-5, atol=1e-5)


def test_the_cache_records_no_graph():
    model = gpt()
    cache = model.new_cache(batch_size=1)
    with pytest.raises(RuntimeError, match="no_grad"):
        model(np.array([[1, 2]]), past_key_values=cache)
    with lmcore.no_grad():
        logits = model(np.array([[1, 2]]), past_key_values=KVCache(2, 1, 2, 12, 8))
    assert not logits.requires_grad and logits.creator is None
    generate(model, np.array([[1, 2]]), 5, seed=0)
    assert all(p.grad is None for p in model.parameters())


def test_the_block_is_the_limit_of_the_cache():
    model = gpt(block_size=6)
    cache = model.new_cache(batch_size=1)
    with lmcore.no_grad():
        model(np.array([[1, 2, 3, 4, 5]]), past_key_values=cache)
        with pytest.raises(ValueError, match="after 5 cached ones, longer than its block_size 6"):
            model(np.array([[1, 2]]), past_key_values=cache)
    k = Tensor(np.zeros((1, 2, 7, 8), np.float32))
    with pytest.raises(ValueError, match="KVCache of 6 positions"):
        KVCache(1, 1, 2, 6, 8).update(k, k, layer_idx=0)
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        KVCache(1, 1, 2, 6, 8).update(k[:, :1], k[:, :1], layer_idx=0)


def test_attention_with_a_cache_equals_causal_attention_over_the_whole_sequence():
    manual_seed(0)
    for rotary in (False, True):
        attn = MultiHeadAttention(16, 4, rotary=rotary, layer_idx=0).to("float64")
        x = Tensor(np.random.default_rng(4).normal(size=(2, 7, 16)))
        cache = KVCache(1, 2, 4, 10, 4, dtype="float64")
        with lmcore.no_grad():
            pieces = [attn(x[:, a:b], past_key_values=cache) for a, b in ((0, 3), (3, 4), (4, 7))]
            whole = attn(x)
        np.testing.assert_allclose(
            np.concatenate([p.numpy() for p in pieces], 1), whole.numpy(), atol=1e-12
        )


def test_attention_padding_mask_covers_the_cached_keys_too():
    attn = MultiHeadAttention(8, 2, layer_idx=0).to("float64")
    x = Tensor(np.random.default_rng(5).normal(size=(1, 4, 8)))
    keep = np.array([[False, True, True, True]])
    cache = KVCache(1, 1, 2, 4, 4, dtype="float64")
    with lmcore.no_grad():
        attn(x[:, :3], keep[:, :3], past_key_values=cache)
        last = attn(x[:, 3:], keep, past_key_values=cache)
        whole = attn(x, keep)
        with pytest.raises(ValueError, match=r"\(B, Tk\) = \(1, 5\)"):
            attn(x[:, :1], keep, past_key_values=cache)
    np.testing.assert_allclose(last.numpy()[:, 0], whole.numpy()[:, 3], atol=1e-12)


def test_attention_needs_its_layer_index_for_a_cache():
    with pytest.raises(ValueError, match="layer_idx"), lmcore.no_grad():
        MultiHeadAttention(8, 2)(
            Tensor(np.ones((1, 2, 8), np.float32)), past_key_values=KVCache(1, 1, 2, 4, 4)
        )


def test_reorder_and_reset():
    cache = KVCache(2, 3, 1, 4, 2)
    for layer in range(2):
        rows = Tensor(np.arange(3, dtype=np.float32)[:, None, None, None] * np.ones((3, 1, 2, 2)))
        cache.update(rows, rows + 10, layer_idx=layer)
    cache.reorder_cache(np.array([2, 2, 0]))
    for layer in range(2):
        keys, values = cache.keys[layer][:, 0, :2, 0], cache.values[layer][:, 0, :2, 0]
        np.testing.assert_array_equal(keys, [[2, 2], [2, 2], [0, 0]])
        np.testing.assert_array_equal(values, [[12, 12], [12, 12], [10, 10]])
    cache.reset()
    assert cache.get_seq_length(0) == cache.get_seq_length(1) == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_beam_search_reorders_the_cache_correctly(dtype):
    model = gpt(dtype=dtype)
    for length in (2, 9, 15):
        prompt = np.random.default_rng(length).integers(0, 23, size=(2, length))
        settings = dict(num_beams=3, eos_token_id=[4], pad_token_id=0, length_penalty=0.8)
        np.testing.assert_array_equal(
            beam_search(model, prompt, 12, **settings),
            beam_search(model, prompt, 12, use_cache=False, **settings),
        )


def test_a_recurrent_model_gives_the_same_tokens_with_and_without_its_state():
    manual_seed(0)
    model = RNNLanguageModel(vocab_size=9, embed_dim=8, hidden_size=16, cell="lstm").to("float64")
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    for settings in SETTINGS:
        np.testing.assert_array_equal(
            generate(model, prompt, 15, **settings),
            generate(model, prompt, 15, use_cache=False, **settings),
        )


def test_the_gpt_generate_method_takes_the_decoding_options():
    model = gpt()
    prompt = np.array([[3, 4]])
    out = model.generate(prompt, 8, top_p=0.8, repetition_penalty=1.2, seed=1, use_cache=False)
    np.testing.assert_array_equal(
        out, generate(model, prompt, 8, top_p=0.8, repetition_penalty=1.2, seed=1)
    )
    np.testing.assert_array_equal(
        model.generate(prompt, 8, num_beams=2), beam_search(model, prompt, 8, num_beams=2)
    )
