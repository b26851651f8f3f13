"""The GPT model: shapes, masking, initialization, sampling, training, GPT-2 weight exchange."""

import numpy as np
import pytest

from lmcore.models.gpt import GPT, GPTConfig
from lmcore.rng import manual_seed

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def tiny_config(**overrides):
    settings = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    return GPTConfig(**{**settings, **overrides})


def tiny_gpt(seed=0, dtype="float64", **overrides):
    manual_seed(seed)
    return GPT(tiny_config(**overrides), dtype=dtype)


def token_ids(batch=2, length=10, vocab=50, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=(batch, length))


# -- shapes, sizes, initialization -----------------------------------------------------------


def test_forward_shapes_and_initial_loss():
    model = tiny_gpt()
    idx = token_ids()
    assert model(idx).shape == (2, 10, 50)
    logits, loss = model(idx, targets=token_ids(seed=1))
    assert logits.shape == (2, 10, 50)
    assert abs(loss.item() - np.log(50)) < 0.1  # small initial weights: near-uniform guesses
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_names_follow_gpt2_and_the_head_is_tied():
    model = tiny_gpt()
    names = list(model.state_dict())
    assert names[:2] == ["wte.weight", "wpe.weight"]
    assert "h.1.attn.c_attn.weight" in names and "h.0.mlp.c_proj.bias" in names
    assert names[-3:] == ["ln_f.weight", "ln_f.bias", "lm_head.weight"]
    assert model.lm_head.weight is model.wte.weight
    assert tiny_gpt(tie_weights=False).lm_head.weight is not tiny_gpt().wte.weight


def test_parameter_count_formula():
    model, (v, t, c, layers) = tiny_gpt(), (50, 16, 16, 2)
    per_block = 12 * c * c + 13 * c
    assert model.num_parameters() == v * c + t * c + layers * per_block + 2 * c
    assert model.num_parameters(non_embedding=True) == v * c + layers * per_block + 2 * c
    rotary = tiny_gpt(positional="rotary")
    assert rotary.num_parameters() == rotary.num_parameters(non_embedding=True)


def test_gpt2_initialization():
    model = tiny_gpt(n_layer=8, n_embd=64, n_head=4, vocab_size=500)
    assert abs(model.wte.weight.data.std() - 0.02) < 0.002
    assert abs(model.h[0].attn.c_attn.weight.data.std() - 0.02) < 0.002
    residual = np.concatenate([b.mlp.c_proj.weight.data.ravel() for b in model.h])
    assert abs(residual.std() - 0.02 / np.sqrt(16)) < 0.0005
    assert all((b.attn.c_attn.bias.data == 0).all() for b in model.h)
    assert (model.ln_f.weight.data == 1).all()


def test_the_same_seed_builds_the_same_model():
    a, b = tiny_gpt(seed=3), tiny_gpt(seed=3)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert not np.array_equal(a.wte.weight.data, tiny_gpt(seed=4).wte.weight.data)


def test_dropout_in_training_is_reproducible_from_the_seed():
    model, idx = tiny_gpt(dropout=0.2), token_ids()
    losses = []
    for _ in range(2):
        manual_seed(7)
        losses.append(model(idx, targets=idx)[1].item())
    assert losses[0] == losses[1]
    assert model.eval()(idx, targets=idx)[1].item() != losses[0]


@pytest.mark.parametrize(
    "arrangement",
    [dict(norm_first=False), dict(residual=False), dict(norm_first=False, residual=False)],
)
def test_block_arrangements_reach_every_block_and_keep_the_parameters(arrangement):
    model, plain = tiny_gpt(**arrangement), tiny_gpt()
    assert all(
        (block.norm_first, block.residual)
        == (arrangement.get("norm_first", True), arrangement.get("residual", True))
        for block in model.h
    )
    assert list(model.state_dict()) == list(plain.state_dict())
    idx = token_ids()
    assert not np.allclose(model(idx).numpy(), plain(idx).numpy())
    logits = model(idx).numpy()  # causal in every arrangement
    changed = idx.copy()
    changed[:, 6:] = (changed[:, 6:] + 7) % 50
    np.testing.assert_allclose(model(changed).numpy()[:, :6], logits[:, :6], atol=1e-12)


# -- causality -------------------------------------------------------------------------------


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rotary"])
def test_no_future_token_leaks_into_the_past(positional):
    model = tiny_gpt(positional=positional)
    idx = token_ids(length=12)
    logits = model(idx).numpy()
    for t in (0, 5, 10):
        changed = idx.copy()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % 50
        after = model(changed).numpy()
        np.testing.assert_allclose(after[:, : t + 1], logits[:, : t + 1], atol=1e-12)
        assert not np.allclose(after[:, t + 1 :], logits[:, t + 1 :])


def test_padding_mask_passes_through_the_blocks():
    model = tiny_gpt()
    idx = token_ids(length=8)
    real = np.ones((2, 8), bool)
    real[1, 6:] = False
    assert model(idx, padding_mask=real).shape == (2, 8, 50)


# -- errors ----------------------------------------------------------------------------------


def test_clear_errors():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="17 tokens, longer than its block_size 16"):
        model(token_ids(length=17))
    bad = token_ids()
    bad[1, 3] = 50
    with pytest.raises(IndexError, match="token id 50, outside its vocabulary of 50"):
        model(bad)
    bad[1, 3] = -2
    with pytest.raises(IndexError, match="token id -2"):
        model(bad)
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(np.arange(5))
    with pytest.raises(ValueError, match="must divide by n_head"):
        tiny_config(n_head=3)
    with pytest.raises(ValueError, match="positional must be one of"):
        tiny_config(positional="absolute")


# -- sampling --------------------------------------------------------------------------------


def test_generate_is_reproducible_and_keeps_the_prompt():
    model = tiny_gpt()
    prompt = token_ids(length=4)
    first = model.generate(prompt, max_new_tokens=20, seed=1)
    assert first.shape == (2, 24) and model.training
    np.testing.assert_array_equal(first[:, :4], prompt)
    np.testing.assert_array_equal(model.generate(prompt, 20, seed=1), first)
    assert ((first >= 0) & (first < 50)).all()


def test_greedy_and_top_k():
    model = tiny_gpt()
    prompt = token_ids(length=3)
    greedy = model.generate(prompt, 6, temperature=0)
    np.testing.assert_array_equal(model.generate(prompt, 6, top_k=1, seed=5), greedy)
    first_step = model(prompt).numpy()[:, -1]
    np.testing.assert_array_equal(greedy[:, 3], first_step.argmax(-1))
    top3 = np.argsort(first_step, axis=-1)[:, -3:]
    for seed in range(10):
        sampled = model.generate(prompt, 1, top_k=3, seed=seed)[:, 3]
        assert all(sampled[b] in top3[b] for b in range(2))
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 1, top_k=0)


def test_sampling_follows_the_distribution():
    model = tiny_gpt(vocab_size=4)
    prompt = np.zeros((1, 1), np.int64)
    probs = np.exp(model(prompt).numpy()[0, -1] * 1.0)
    probs /= probs.sum()
    draws = np.concatenate(
        [model.generate(np.zeros((500, 1), np.int64), 1, seed=s)[:, 1] for s in range(4)]
    )
    frequencies = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(frequencies, probs, atol=0.03)


def test_generate_crops_the_context_to_the_block():
    model = tiny_gpt(block_size=8)
    assert model.generate(token_ids(length=6), 10, seed=0).shape == (2, 16)


# -- training --------------------------------------------------------------------------------


def test_a_tiny_gpt_overfits_a_repeated_sequence():
    manual_seed(0)
    model = GPT(tiny_config(vocab_size=12, n_embd=32, block_size=16))
    pattern = np.random.default_rng(0).permutation(12)  # each token fixes the next one
    stream = np.tile(pattern, 4)
    starts = np.arange(0, len(stream) - 17)
    x = np.stack([stream[s : s + 16] for s in starts])
    y = np.stack([stream[s + 1 : s + 17] for s in starts])
    optimizer = model.configure_optimizer(weight_decay=0.0, lr=1e-2, betas=(0.9, 0.95))
    for _ in range(40):
        _, loss = model(x, targets=y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_configure_optimizer_decays_matrices_only():
    model = tiny_gpt()
    decay, no_decay = model.configure_optimizer(0.1, 3e-4).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and len(decay["params"]) == 2 + 2 * 4
    assert all(p.ndim == 1 for p in no_decay["params"])


# -- GPT-2 weights ---------------------------------------------------------------------------


def gpt2_checkpoint(n_layer=2, width=16, vocab=50, positions=24, seed=0):
    """A random state dict in the Hugging Face GPT-2 layout (Conv1D weights are (in, out))."""
    rng = np.random.default_rng(seed)

    def normal(*shape, mean=0.0, std=0.2):
        return rng.normal(mean, std, size=shape)

    sd = {"wte.weight": normal(vocab, width), "wpe.weight": normal(positions, width)}
    for i in range(n_layer):
        p = f"h.{i}."
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = normal(width, mean=1.0), normal(width)
        sd[p + "attn.c_attn.weight"] = normal(width, 3 * width)
        sd[p + "attn.c_attn.bias"] = normal(3 * width)
        sd[p + "attn.c_proj.weight"] = normal(width, width)
        sd[p + "attn.c_proj.bias"] = normal(width)
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = normal(width, mean=1.0), normal(width)
        sd[p + "mlp.c_fc.weight"] = normal(width, 4 * width)
        sd[p + "mlp.c_fc.bias"] = normal(4 * width)
        sd[p + "mlp.c_proj.weight"] = normal(4 * width, width)
        sd[p + "mlp.c_proj.bias"] = normal(width)
    sd["ln_f.weight"], sd["ln_f.bias"] = normal(width, mean=1.0), normal(width)
    return sd


def numpy_gpt2_logits(sd, ids, n_head):
    """GPT-2's forward pass written directly on the HF layout, independent of lmcore."""

    def layer_norm(x, name):
        centered = x - x.mean(-1, keepdims=True)
        variance = (centered**2).mean(-1, keepdims=True)
        return centered / np.sqrt(variance + 1e-5) * sd[name + ".weight"] + sd[name + ".bias"]

    def conv1d(x, name):  # Conv1D: x @ W with W stored (in, out)
        return x @ sd[name + ".weight"] + sd[name + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    batch, length = ids.shape
    x = sd["wte.weight"][ids] + sd["wpe.weight"][:length]
    width = x.shape[-1]
    future = np.triu(np.ones((length, length), bool), k=1)
    for i in range(sum(k.endswith("ln_1.weight") for k in sd)):
        h = conv1d(layer_norm(x, f"h.{i}.ln_1"), f"h.{i}.attn.c_attn")
        q, k, v = (
            part.reshape(batch, length, n_head, -1).transpose(0, 2, 1, 3)
            for part in np.split(h, 3, axis=-1)
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(width // n_head)
        scores[..., future] = -np.inf
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        heads = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = x + conv1d(heads, f"h.{i}.attn.c_proj")
        h = gelu(conv1d(layer_norm(x, f"h.{i}.ln_2"), f"h.{i}.mlp.c_fc"))
        x = x + conv1d(h, f"h.{i}.mlp.c_proj")
    return layer_norm(x, "ln_f") @ sd["wte.weight"].T


def test_gpt2_checkpoint_loads_with_shapes_names_and_transposes(tmp_path):
    sd = gpt2_checkpoint()
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(sd, str(path))
    model = GPT.load_gpt2(path, n_head=2)
    c = model.config
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (50, 24, 2, 2, 16)
    assert c.tie_weights and model.wte.weight.dtype == np.float64
    np.testing.assert_array_equal(
        model.h[1].attn.c_attn.weight.data, sd["h.1.attn.c_attn.weight"].T
    )
    np.testing.assert_array_equal(model.h[0].mlp.c_proj.weight.data, sd["h.0.mlp.c_proj.weight"].T)
    np.testing.assert_array_equal(model.h[0].ln_2.bias.data, sd["h.0.ln_2.bias"])
    assert GPT.load_gpt2(path, n_head=2, dtype="float32").wte.weight.dtype == np.float32


def test_gpt2_logits_match_an_independent_numpy_forward():
    sd = gpt2_checkpoint()
    model = GPT.from_gpt2_state_dict(sd, n_head=2)
    ids = token_ids(batch=3, length=24, seed=1)
    np.testing.assert_allclose(model(ids).numpy(), numpy_gpt2_logits(sd, ids, 2), atol=1e-5)


def test_gpt2_prefix_mask_buffers_and_untied_head_are_handled():
    sd = gpt2_checkpoint()
    hf = {f"transformer.{k}": v for k, v in sd.items()}
    for i in range(2):
        hf[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 24, 24)))
    model = GPT.from_gpt2_state_dict(hf, n_head=2)
    np.testing.assert_array_equal(model.wte.weight.data, sd["wte.weight"])
    assert model.config.tie_weights
    hf["lm_head.weight"] = sd["wte.weight"] + 1
    untied = GPT.from_gpt2_state_dict(hf, n_head=2)
    assert not untied.config.tie_weights
    np.testing.assert_array_equal(untied.lm_head.weight.data, sd["wte.weight"] + 1)
    assert "lm_head.weight" in untied.to_gpt2_state_dict()


def test_gpt2_save_load_round_trip(tmp_path):
    sd = gpt2_checkpoint()
    model = GPT.from_gpt2_state_dict(sd, n_head=2)
    exported = model.to_gpt2_state_dict()
    assert list(exported) == list(sd)
    for name, array in sd.items():
        np.testing.assert_array_equal(exported[name], array, err_msg=name)
    path = tmp_path / "round_trip.safetensors"
    model.save_gpt2(path)
    assert list(tmp_path.iterdir()) == [path]
    reread = safetensors_numpy.load_file(str(path))
    assert set(reread) == set(sd)
    again = GPT.load_gpt2(path, n_head=2)
    ids = token_ids(length=8)
    np.testing.assert_array_equal(again(ids).numpy(), model(ids).numpy())


def test_gpt2_exchange_errors():
    sd = gpt2_checkpoint()
    with pytest.raises(ValueError, match="pass n_head="):
        GPT.from_gpt2_state_dict(sd)
    del sd["h.1.mlp.c_fc.bias"]
    with pytest.raises(RuntimeError, match=r"missing keys: h\.1\.mlp\.c_fc\.bias"):
        GPT.from_gpt2_state_dict(sd, n_head=2)
    with pytest.raises(KeyError, match="not a GPT-2 state dict"):
        GPT.from_gpt2_state_dict({"weight": np.zeros(3)})
    with pytest.raises(ValueError, match="learned positions"):
        tiny_gpt(positional="rotary").to_gpt2_state_dict()
    with pytest.raises(ValueError, match="pre-norm residual"):
        tiny_gpt(norm_first=False).to_gpt2_state_dict()


def test_gpt2_head_count_defaults_to_width_over_64():
    sd = gpt2_checkpoint(n_layer=1, width=128, vocab=20, positions=4)
    assert GPT.from_gpt2_state_dict(sd).config.n_head == 2
