"""Llama: its operations (gradient checks), grouped-query attention, the cache, the GGUF
weights and tokenizer of SmolLM2 against transformers (snapshot in tests/data/smollm2,
made by tests/data/make_smollm2_snapshot.py; a live comparison where torch is installed)."""

import json
from pathlib import Path

import numpy as np
import pytest

from lmcore import no_grad
from lmcore.autograd import Tensor
from lmcore.gradcheck import gradcheck
from lmcore.models.llama import (
    Llama,
    LlamaConfig,
    RMSNorm,
    rms_norm,
    smollm2_path,
    swiglu,
    unpermute_rope_rows,
)
from lmcore.tokenizers.gguf_bpe import GGUFBPETokenizer, apply_chat_template

SNAPSHOT = Path(__file__).parent / "data" / "smollm2"
TINY = LlamaConfig(vocab_size=40, block_size=24, n_layer=2, n_head=6, n_kv_head=2, n_embd=24,
                   intermediate_size=32, rope_base=500.0)  # fmt: skip


def _rand(*shape, seed=0):
    return Tensor(np.random.default_rng(seed).normal(size=shape), requires_grad=True)


def test_rms_norm_gradcheck_and_value():
    x, w = _rand(2, 3, 5), _rand(5, seed=1)
    assert gradcheck(lambda a, b: rms_norm(a, b, eps=1e-5), x, w)
    y = rms_norm(x, w, eps=1e-5).numpy()
    a = x.numpy()
    expected = a / np.sqrt((a * a).mean(-1, keepdims=True) + 1e-5) * w.numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="weight must have shape"):
        rms_norm(x, Tensor(np.ones(4)))
    assert RMSNorm(5)(Tensor(np.ones((1, 5), np.float32))).shape == (1, 5)


def test_swiglu_gradcheck_and_value():
    gate, up = _rand(4, 6), _rand(4, 6, seed=1)
    assert gradcheck(swiglu, gate, up)
    g = gate.numpy()
    np.testing.assert_allclose(swiglu(gate, up).numpy(), g / (1 + np.exp(-g)) * up.numpy())


def test_unpermute_undoes_llama_cpp_permute():
    def permute(w, n_head):  # convert_hf_to_gguf.py's, Hugging Face order -> llama.cpp's
        return (
            w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape)
        )

    w = np.random.default_rng(0).normal(size=(3 * 8, 5))
    np.testing.assert_array_equal(unpermute_rope_rows(permute(w, 3), 3), w)


def _naive_attention(model, x):
    """Grouped-query attention with keys and values repeated per query head (repeat_kv)."""
    from lmcore.functional.fused_attention import rotary_tables

    attn, (B, T, _) = model.layers[0].self_attn, x.shape
    H, Hkv, D = attn.n_head, attn.n_kv_head, attn.head_dim

    def heads(w, n):
        return (x @ w.T).reshape(B, T, n, D).transpose(0, 2, 1, 3)

    q, k, v = (
        heads(attn.q_proj.weight.numpy(), H),
        heads(attn.k_proj.weight.numpy(), Hkv),
        heads(attn.v_proj.weight.numpy(), Hkv),
    )
    cos, sin = rotary_tables(T, D, attn.rope_base, dtype=np.float64)

    def rope(a):
        first, second = a[..., : D // 2], a[..., D // 2 :]
        return np.concatenate([first * cos - second * sin, second * cos + first * sin], -1)

    q, k = rope(q), rope(k)
    k, v = np.repeat(k, H // Hkv, axis=1), np.repeat(v, H // Hkv, axis=1)
    s = q @ k.swapaxes(-1, -2) / np.sqrt(D) + np.triu(np.full((T, T), -np.inf), 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    y = (p / p.sum(-1, keepdims=True)) @ v
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D) @ attn.o_proj.weight.numpy().T


def test_grouped_query_attention_matches_repeated_kv_and_gradchecks():
    model = Llama(TINY, dtype="float64")
    x = np.random.default_rng(0).normal(size=(2, 7, TINY.n_embd))
    np.testing.assert_allclose(
        model.layers[0].self_attn(Tensor(x)).numpy(), _naive_attention(model, x), atol=1e-12
    )
    assert gradcheck(lambda t: model.layers[0].self_attn(t), Tensor(x[:1, :4], requires_grad=True))


def test_block_gradcheck_in_float64():
    model = Llama(TINY, dtype="float64")
    block = model.layers[1]
    assert gradcheck(lambda t: block(t), _rand(1, 3, TINY.n_embd))


def test_cache_gives_the_tokens_of_recomputing_and_grows():
    model = Llama(TINY)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    cached = model.generate(prompt, 30, temperature=0)  # past the block of 24
    again = model.generate(prompt, 30, temperature=0, use_cache=False)
    np.testing.assert_array_equal(cached, again)
    big = Llama(LlamaConfig(vocab_size=20, block_size=600, n_layer=1, n_head=2, n_kv_head=1,
                            n_embd=8, intermediate_size=8))  # fmt: skip
    state = None
    ids = np.ones((1, 1), np.int64)
    with no_grad():
        for _ in range(300):  # 256 positions at first, then the cache doubles
            logits, state = big.next_token_logits(ids, state)
            ids = np.concatenate([ids, [[3]]], axis=1)
    assert state.max_len == 512 and state.get_seq_length() == 300
    with no_grad():
        fresh = big(ids[:, :-1]).data[:, -1]
    np.testing.assert_allclose(logits, fresh, atol=1e-4)


def test_config_errors():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        LlamaConfig(vocab_size=5, block_size=4, n_layer=1, n_head=4, n_kv_head=3, n_embd=8,
                    intermediate_size=4)  # fmt: skip
    with pytest.raises(ValueError, match="'gpt2' model"):
        LlamaConfig.from_gguf_metadata({"general.architecture": "gpt2"})
    with pytest.raises(IndexError, match="vocabulary of 40"):
        Llama(TINY)(np.array([[41]]))


def test_chat_template_matches_the_files_jinja():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert apply_chat_template(messages) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="'role' and 'content'"):
        apply_chat_template([{"text": "Hi"}])


# -- the real model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    try:
        path = smollm2_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    from lmcore.gguf import GGUFReader

    reader = GGUFReader(path)
    tok = GGUFBPETokenizer.from_gguf_metadata(reader.metadata)
    reader.close()
    return Llama.from_gguf(path), tok


@pytest.fixture(scope="module")
def reference():
    data = json.loads((SNAPSHOT / "reference.json").read_text(encoding="utf-8"))
    return data, np.load(SNAPSHOT / "logits.npz")


def test_config_read_from_the_file(smollm2):
    model, tok = smollm2
    c = model.config
    assert (c.n_layer, c.n_head, c.n_kv_head, c.n_embd, c.vocab_size) == (30, 9, 3, 576, 49152)
    assert c.rope_base == 100000.0 and c.tie_weights and c.block_size == 8192
    assert model.num_parameters() == 134_515_008
    assert (tok.bos_token_id, tok.eos_token_id, tok.vocab_size) == (1, 2, 49152)


def test_tokenizer_ids_equal_the_reference(smollm2, reference):
    _, tok = smollm2
    data, _ = reference
    for text, ids in data["strings"].items():
        assert tok.encode(text, allowed_special="all") == ids, text
        assert tok.decode(ids) == text
    assert apply_chat_template(data["messages"]) == data["prompt"]
    assert tok.encode_chat(data["messages"]) == data["prompt_ids"]


def test_tokenizer_round_trip_and_smollm_digits(smollm2):
    _, tok = smollm2
    for text in ["", "x", "  spaces   and\n\n\ttabs ", "Ünïcödé 中文 🙂👍", "3.14159 * 2e10"]:
        assert tok.decode(tok.encode(text)) == text
    # SmolLM's pre-tokenizer (llama.cpp's "smollm", Hugging Face's Digits then ByteLevel)
    # isolates digits, so the two spaces before a digit stay one chunk: "ĠĠ" (id 256).
    # transformers' GGUF conversion keeps only ByteLevel and gives [81, 216, 216, 34].
    assert tok.encode("a  2") == [81, 256, 34]
    assert tok.encode("a\x04b") == [81, 82]  # a byte without a token is dropped (as transformers)
    with pytest.raises(ValueError, match="special token"):
        tok.encode("<|im_end|>")


def test_logits_and_greedy_tokens_equal_transformers(smollm2, reference):
    model, _ = smollm2
    data, logits = reference
    with no_grad():
        ours = model(np.array([data["prompt_ids"]])).data[0, -data["positions"] :]  # (P, V)
    np.testing.assert_allclose(
        np.take_along_axis(ours, logits["ids"], 1), logits["values"], atol=5e-4, rtol=1e-4
    )
    np.testing.assert_array_equal(ours.argmax(1), logits["argmax"])
    out = model.generate(np.array([data["prompt_ids"]]), len(data["greedy_ids"]), temperature=0)
    assert out[0, len(data["prompt_ids"]) :].tolist() == data["greedy_ids"]


def test_int8_model_keeps_the_answer(smollm2, reference):
    from lmcore.nn.quantized import QuantizedLinear, quantize_model

    model, tok = smollm2
    data, logits = reference
    quantized = quantize_model(Llama.from_gguf(), bits=8)
    assert isinstance(quantized.layers[0].mlp.up_proj, QuantizedLinear)
    prompt = np.array([data["prompt_ids"]])
    with no_grad():
        ours = model(prompt, logits_to_keep=1).data[0, -1]
        eight = quantized(prompt, logits_to_keep=1).data[0, -1]
    assert eight.argmax() == ours.argmax()
    assert np.corrcoef(eight, ours)[0, 1] > 0.995  # measured 0.998 (per-row scales)
    out = quantized.generate(prompt, 8, temperature=0, eos_token_id=tok.eos_token_id)
    assert "Paris" in tok.decode(out[0, prompt.shape[1] :].tolist())


def test_live_against_transformers(smollm2):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    model, tok = smollm2
    path = smollm2_path()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = "Write a haiku about the sea."
    ids = tok.encode_chat([{"role": "user", "content": text}])
    assert ids == ref_tok.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0].numpy()
    with no_grad():
        ours = model(np.array([ids])).data[0]
    np.testing.assert_allclose(ours, expected, atol=5e-4, rtol=1e-4)
