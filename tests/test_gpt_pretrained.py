"""GPT.save_pretrained and GPT.from_pretrained: Hugging Face GPT-2 directories.

Checked three ways: lmcore → files → lmcore; directories laid out by hand exactly as
`transformers` writes them; and, against `transformers` itself, the checkpoints it wrote
into tests/data/hf_gpt2/ (see tests/data/make_hf_gpt2_snapshot.py) and, where `torch` and
`transformers` are installed, live exchanges in both directions.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lmcore.models.gpt import GPT, GPTConfig
from lmcore.rng import manual_seed

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SNAPSHOT = Path(__file__).resolve().parent / "data" / "hf_gpt2"
CONV1D = re.compile(r"h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight")
SHAPE = dict(vocab_size=101, block_size=32, n_layer=2, n_head=3, n_embd=48)


def odd_gpt(seed=0, **overrides):
    """A GPT of a shape no GPT-2 size has (width 48 in 3 heads), with weights large
    enough that the logits differ clearly from token to token."""
    manual_seed(seed)
    model = GPT(GPTConfig(**{**SHAPE, **overrides}))
    rng = np.random.default_rng(seed)
    for parameter in model.parameters():
        parameter.data[...] += rng.normal(0, 0.1, parameter.shape).astype(parameter.dtype)
    return model.eval()


def token_ids(batch=2, length=32, vocab=101, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, size=(batch, length))


def logits(model, ids):
    return model(ids).numpy()


def bfloat16_bits(array):
    """The bfloat16 patterns of a float32 array (rounding toward zero)."""
    return (np.ascontiguousarray(array, np.float32).view(np.uint32) >> 16).astype("<u2")


def through_bfloat16(array):
    """A float32 array rounded as :func:`bfloat16_bits` rounds it."""
    return (bfloat16_bits(array).astype(np.uint32) << 16).view(np.float32)


def save_bfloat16(arrays, path):
    """A safetensors file of BF16 tensors, written byte by byte from the format's
    description (safetensors.numpy cannot: NumPy has no bfloat16): an 8-byte little-endian
    header length, a JSON header with each tensor's dtype, shape and byte range, the bytes."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, array in arrays.items():
        data = bfloat16_bits(array).tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(len(text).to_bytes(8, "little") + text + b"".join(chunks))


def transformers_config(model, **changes):
    """config.json as transformers 4.57 writes it for a GPT2LMHeadModel (sorted keys, no
    tie_word_embeddings when it is the default True, "dtype", bookkeeping keys)."""
    c = model.config
    settings = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 50256,
        "dtype": "float32",
        "embd_pdrop": 0.1,
        "eos_token_id": 50256,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_embd": c.n_embd,
        "n_head": c.n_head,
        "n_inner": None,
        "n_layer": c.n_layer,
        "n_positions": c.block_size,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "transformers_version": "4.57.6",
        "use_cache": True,
        "vocab_size": c.vocab_size,
    }
    if not c.tie_weights:
        settings["tie_word_embeddings"] = False
    settings.update(changes)
    return settings


def transformers_weights(model, prefix=True, mask_buffers=False):
    """The model's weights under the names and in the layout of GPT2LMHeadModel: Conv1D
    weights (in, out), "transformer." before every name but lm_head's, lm_head.weight only
    when untied, and optionally the causal-mask buffers older versions saved."""
    weights, c = {}, model.config
    for name, array in model.state_dict().items():
        array = np.asarray(array, np.float32)
        if name == "lm_head.weight":
            if not c.tie_weights:
                weights[name] = array
            continue
        weights[("transformer." if prefix else "") + name] = (
            np.ascontiguousarray(array.T) if CONV1D.fullmatch(name) else array
        )
    if mask_buffers:
        causal = np.tril(np.ones((c.block_size, c.block_size), np.float32))
        for i in range(c.n_layer):
            base = f"{'transformer.' if prefix else ''}h.{i}.attn."
            weights[base + "bias"] = causal[None, None]
            weights[base + "masked_bias"] = np.array(-1e4, np.float32)
    return weights


def write_transformers_directory(directory, model, dtype="float32", **layout):
    """A directory laid out as GPT2LMHeadModel.save_pretrained lays it out."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = transformers_weights(model, **layout)
    path = directory / "model.safetensors"
    if dtype == "bfloat16":
        save_bfloat16(weights, path)
    else:
        weights = {k: v.astype(dtype) for k, v in weights.items()}
        safetensors_numpy.save_file(weights, str(path), metadata={"format": "pt"})
    config = transformers_config(model, dtype=dtype)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    generation = {"_from_model_config": True, "bos_token_id": 50256, "eos_token_id": 50256}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return directory


def round_weights(model, dtype):
    """The model with its weights rounded to float16 or bfloat16 (kept in float32), as a
    file of that dtype holds them."""
    for parameter in model.parameters():
        if dtype == "float16":
            parameter.data[...] = parameter.data.astype(np.float16)
        elif dtype == "bfloat16":
            parameter.data[...] = through_bfloat16(parameter.data)
    return model


# -- lmcore → files → lmcore -----------------------------------------------------------------


@pytest.mark.parametrize("tie_weights", [True, False])
def test_round_trip_keeps_shape_settings_and_logits(tmp_path, tie_weights):
    model = odd_gpt(dropout=0.1, tie_weights=tie_weights)
    model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]  # and no temporary file left behind
    again = GPT.from_pretrained(tmp_path / "saved")
    assert again.config == model.config  # n_head 3 came from config.json, not guessed
    assert not again.training and again.wte.weight.dtype == np.float32
    assert (again.lm_head.weight is again.wte.weight) == tie_weights
    ids = token_ids()
    np.testing.assert_array_equal(logits(again, ids), logits(model, ids))
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], array, err_msg=name)


def test_saving_again_replaces_the_files(tmp_path):
    odd_gpt(seed=0).save_pretrained(tmp_path)
    second = odd_gpt(seed=1)
    second.save_pretrained(tmp_path)
    ids = token_ids()
    np.testing.assert_array_equal(logits(GPT.from_pretrained(tmp_path), ids), logits(second, ids))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_saved_files_follow_the_transformers_layout(tmp_path):
    model = odd_gpt(dropout=0.25)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    expected = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": 101,
        "n_positions": 32,
        "n_ctx": 32,
        "n_embd": 48,
        "n_layer": 2,
        "n_head": 3,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.25,
        "embd_pdrop": 0.25,
        "attn_pdrop": 0.25,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "bos_token_id": None,  # a vocabulary too small for GPT-2's <|endoftext|> id
        "torch_dtype": "float32",
    }
    assert {k: config[k] for k in expected} == expected
    stored = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    assert stored.keys() == transformers_weights(model).keys()
    assert all(name.startswith("transformer.") for name in stored)
    assert stored["transformer.h.1.attn.c_attn.weight"].shape == (48, 144)  # (in, out)
    assert stored["transformer.h.0.mlp.c_proj.weight"].shape == (192, 48)
    np.testing.assert_array_equal(
        stored["transformer.h.0.mlp.c_fc.weight"], model.h[0].mlp.c_fc.weight.data.T
    )
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "np") as file:
        assert file.metadata() == {"format": "pt"}
    big = GPT(GPTConfig(vocab_size=50257, block_size=4, n_layer=1, n_head=1, n_embd=4))
    big.save_pretrained(tmp_path / "big")
    config = json.loads((tmp_path / "big" / "config.json").read_text())
    assert config["bos_token_id"] == config["eos_token_id"] == 50256


# -- directories as transformers writes them ----------------------------------------------


@pytest.mark.parametrize(
    "dtype, prefix, mask_buffers",
    [
        ("float32", True, False),  # GPT2LMHeadModel.save_pretrained today
        ("float32", False, True),  # the original gpt2 files: no prefix, mask buffers
        ("float32", True, True),
        ("float16", True, False),
        ("bfloat16", True, False),
    ],
)
def test_a_transformers_directory_loads_with_the_logits_of_its_source(
    tmp_path, dtype, prefix, mask_buffers
):
    source = round_weights(odd_gpt(), dtype)
    write_transformers_directory(tmp_path, source, dtype, prefix=prefix, mask_buffers=mask_buffers)
    model = GPT.from_pretrained(tmp_path)
    c = model.config
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (101, 32, 2, 3, 48)
    assert c.tie_weights and c.dropout == 0.1 and c.positional == "learned"
    assert model.wte.weight.dtype == np.float32
    ids = token_ids()
    np.testing.assert_array_equal(logits(model, ids), logits(source, ids))


def test_an_untied_transformers_directory_keeps_its_head(tmp_path):
    source = odd_gpt(tie_weights=False)
    write_transformers_directory(tmp_path, source)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    model = GPT.from_pretrained(tmp_path)
    assert not model.config.tie_weights
    np.testing.assert_array_equal(model.lm_head.weight.data, source.lm_head.weight.data)
    ids = token_ids()
    np.testing.assert_array_equal(logits(model, ids), logits(source, ids))


def test_a_tied_head_stored_beside_the_embedding_is_accepted(tmp_path):
    source = odd_gpt()
    write_transformers_directory(tmp_path, source)
    weights = transformers_weights(source)
    weights["lm_head.weight"] = weights["transformer.wte.weight"]  # torch's state_dict has it
    safetensors_numpy.save_file(weights, str(tmp_path / "model.safetensors"))
    model = GPT.from_pretrained(tmp_path)
    assert model.lm_head.weight is model.wte.weight


def test_sharded_weights_load_through_their_index(tmp_path):
    source = odd_gpt()
    write_transformers_directory(tmp_path, source)
    weights = transformers_weights(source)
    (tmp_path / "model.safetensors").unlink()
    names = list(weights)
    shards = {"model-00001-of-00002.safetensors": names[:10]}
    shards["model-00002-of-00002.safetensors"] = names[10:]
    for file, part in shards.items():
        safetensors_numpy.save_file({k: weights[k] for k in part}, str(tmp_path / file))
    index = {"metadata": {}, "weight_map": {k: f for f, part in shards.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    ids = token_ids()
    np.testing.assert_array_equal(logits(GPT.from_pretrained(tmp_path), ids), logits(source, ids))


def test_dtype_and_dropout_can_be_chosen(tmp_path):
    write_transformers_directory(tmp_path, odd_gpt(), "float16")
    model = GPT.from_pretrained(tmp_path, dtype="float64", dropout=0.0)
    assert model.wte.weight.dtype == np.float64 and model.config.dropout == 0.0


def test_load_gpt2_reads_a_bfloat16_file_as_float32(tmp_path):
    source = round_weights(odd_gpt(), "bfloat16")
    save_bfloat16(transformers_weights(source), tmp_path / "model.safetensors")
    model = GPT.load_gpt2(tmp_path / "model.safetensors", n_head=3)
    assert model.wte.weight.dtype == np.float32
    ids = token_ids()
    np.testing.assert_array_equal(logits(model, ids), logits(source, ids))


# -- against transformers: committed snapshot, then live -------------------------------------


@pytest.mark.parametrize(
    "name, n_head, n_layer, tied",
    [("tied_bfloat16", 3, 2, True), ("untied_float32", 2, 1, False)],
)
def test_checkpoints_written_by_transformers_give_its_logits(name, n_head, n_layer, tied):
    expected = np.load(SNAPSHOT / "expected.npz")
    model = GPT.from_pretrained(SNAPSHOT / name)
    c = model.config
    assert (c.vocab_size, c.block_size, c.n_embd) == (29, 8, 12)
    assert (c.n_head, c.n_layer, c.tie_weights) == (n_head, n_layer, tied)
    np.testing.assert_allclose(
        logits(model, expected["ids"]), expected[f"logits_{name}"], rtol=1e-5, atol=1e-5
    )


def live_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return torch, transformers


@pytest.mark.parametrize("tie_weights", [True, False])
def test_transformers_loads_what_lmcore_saves(tmp_path, tie_weights):
    torch, transformers = live_transformers()
    model = odd_gpt(dropout=0.1, tie_weights=tie_weights)
    model.save_pretrained(tmp_path)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert theirs.config.n_head == 3 and theirs.config.tie_word_embeddings == tie_weights
    ids = token_ids()
    with torch.no_grad():
        expected = theirs(torch.as_tensor(ids)).logits.float().numpy()
    np.testing.assert_allclose(logits(model, ids), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("tie_weights", [True, False])
def test_lmcore_loads_what_transformers_saves(tmp_path, dtype, tie_weights):
    torch, transformers = live_transformers()
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=101, n_positions=32, n_embd=48, n_layer=2, n_head=3,
        tie_word_embeddings=tie_weights, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    theirs = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    theirs.to(getattr(torch, dtype)).save_pretrained(tmp_path)
    theirs.float()  # the weights as written, in float32
    model = GPT.from_pretrained(tmp_path)
    assert model.config.n_head == 3 and model.config.tie_weights == tie_weights
    ids = token_ids()
    with torch.no_grad():
        expected = theirs(torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(logits(model, ids), expected, rtol=1e-4, atol=1e-4)


# -- errors ----------------------------------------------------------------------------------


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no directory .*nowhere"):
        GPT.from_pretrained(tmp_path / "nowhere")
    odd_gpt().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="it is a file: GPT.load_gpt2"):
        GPT.from_pretrained(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="no model.safetensors, only pytorch_model.bin"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        GPT.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no safetensors file"):
        GPT.load_gpt2(tmp_path / "model.safetensors", n_head=3)


def edit_config(directory, **changes):
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(model_type="bert"), "a model of type 'bert', not 'gpt2'"),
        (dict(model_type=None), "a model of type None"),
        (dict(activation_function="relu"), "activation_function='relu'.*tanh form"),
        (dict(n_inner=100), "n_inner=100.*4 \\* n_embd = 192"),
        (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon=1e-06"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
        (dict(attn_pdrop=0.0), "different dropout rates.*attn_pdrop=0.0.*pass dropout="),
    ],
)
def test_configs_lmcore_cannot_follow_are_refused_by_name(tmp_path, changes, message):
    odd_gpt(dropout=0.1).save_pretrained(tmp_path)
    edit_config(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        GPT.from_pretrained(tmp_path)


def test_a_config_that_is_not_json_is_refused(tmp_path):
    odd_gpt().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{model_type: gpt2")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        GPT.from_pretrained(tmp_path)


def test_weights_that_do_not_fit_the_config_are_listed_by_name(tmp_path):
    source = odd_gpt()
    write_transformers_directory(tmp_path, source)
    weights = transformers_weights(source)
    del weights["transformer.h.1.mlp.c_fc.bias"]
    weights["transformer.h.1.mlp.gate.weight"] = np.zeros(3, np.float32)
    safetensors_numpy.save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(RuntimeError) as error:
        GPT.from_pretrained(tmp_path)
    assert re.search(r"missing keys: h\.1\.mlp\.c_fc\.bias\n", str(error.value))
    assert re.search(r"unexpected keys: h\.1\.mlp\.gate\.weight", str(error.value))
    assert "model.safetensors into a GPT with vocab_size=101" in str(error.value)

    write_transformers_directory(tmp_path, source)
    edit_config(tmp_path, vocab_size=100, n_layer=3)
    with pytest.raises(RuntimeError) as error:
        GPT.from_pretrained(tmp_path)
    assert "wte.weight: file (101, 48), model (100, 48)" in str(error.value)
    assert re.search(r"missing keys: h\.2\.ln_1\.weight, ", str(error.value))

    write_transformers_directory(tmp_path, odd_gpt(tie_weights=False))
    edit_config(tmp_path, tie_word_embeddings=True)
    with pytest.raises(ValueError, match="lm_head.weight differs from wte.weight"):
        GPT.from_pretrained(tmp_path)
    edit_config(tmp_path, tie_word_embeddings=False)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        GPT.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "setting, message",
    [
        (dict(positional="rotary"), "positional='rotary' \\(GPT-2 has learned positions"),
        (dict(positional="sinusoidal"), "positional='sinusoidal'"),
        (dict(bias=False), "bias=False \\(GPT-2 has biases"),
    ],
)
def test_models_gpt2_cannot_express_are_not_saved(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        odd_gpt(**setting).save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written
