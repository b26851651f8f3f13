"""lmcore.models.BERT: gradients, padding, training, errors, and the exchange with Hugging Face.

Checked against `transformers`' BertForMaskedLM two ways: the checkpoint it wrote into
tests/data/hf_bert/ with the numbers it computed from it (see
tests/data/make_hf_bert_snapshot.py), always; and, where `torch` and `transformers` are
installed, live exchanges through files in both directions.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lmcore import backend, nn
from lmcore.data.masking import mask_tokens
from lmcore.gradcheck import gradcheck
from lmcore.models import BERT, BERTConfig
from lmcore.optim import AdamW, weight_decay_groups
from lmcore.rng import manual_seed

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SNAPSHOT = Path(__file__).resolve().parent / "data" / "hf_bert"
TINY = dict(
    vocab_size=30,
    hidden_size=12,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=20,
    max_position_embeddings=16,
)


def noisy_bert(seed=0, **overrides):
    """A BERT in evaluation mode with weights large enough that the logits differ clearly
    from token to token."""
    manual_seed(seed)
    model = BERT(BERTConfig(**{**TINY, **overrides}))
    rng = np.random.default_rng(seed)
    for parameter in model.parameters():
        parameter.data[...] += rng.normal(0, 0.2, parameter.shape).astype(parameter.dtype)
    return model.eval()


def padded_batch(vocab=30, seed=1):
    """ids (2, 9) with the second sequence padded after 6 tokens, its attention mask, two
    segments, and labels at three positions."""
    ids = np.random.default_rng(seed).integers(1, vocab, size=(2, 9))
    attention_mask = np.ones_like(ids)
    attention_mask[1, 6:] = 0
    ids[1, 6:] = 0
    token_type_ids = np.zeros_like(ids)
    token_type_ids[:, 4:] = 1
    labels = np.full_like(ids, -100)
    labels[0, 2], labels[0, 7], labels[1, 3] = 5, 11, 29
    return dict(
        input_ids=ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels
    )


def read_weights(directory):
    return safetensors_numpy.load_file(str(Path(directory) / "model.safetensors"))


def write_weights(directory, weights):
    safetensors_numpy.save_file(weights, str(Path(directory) / "model.safetensors"))


def copy_snapshot(tmp_path):
    target = tmp_path / "bert"
    shutil.copytree(SNAPSHOT, target)
    (target / "expected.npz").unlink()
    return target


# -- gradients -----------------------------------------------------------------------


def test_gradcheck_whole_model_float64():
    manual_seed(0)
    config = BERTConfig(
        vocab_size=7,
        hidden_size=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=6,
        max_position_embeddings=5,
        layer_norm_eps=1e-5,
    )
    model = BERT(config, dtype="float64").eval()
    rng = np.random.default_rng(0)
    for parameter in model.parameters():
        parameter.data[...] += rng.normal(0, 0.5, parameter.shape)
    ids = np.array([[1, 4, 6, 2], [3, 5, 0, 0]])
    attention_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    token_type_ids = np.array([[0, 0, 1, 1], [0, 1, 0, 0]])
    labels = np.array([[-100, 3, -100, 6], [2, -100, -100, -100]])
    names = [name for name, _ in model.named_parameters()]
    assert "embeddings.word_embeddings.weight" in names  # the tied decoder is checked too

    def outputs(*parameters):
        return nn.functional_call(
            model,
            dict(zip(names, parameters, strict=True)),
            (ids, attention_mask, token_type_ids, labels),
        )

    assert gradcheck(outputs, *[p for _, p in model.named_parameters()])


# -- padding, dropout, initialization ------------------------------------------------


def test_appended_padding_leaves_real_positions_unchanged():
    model = noisy_bert()
    ids = np.random.default_rng(2).integers(1, 30, size=(2, 6))
    alone = model(ids).numpy()
    padded_ids = np.concatenate([ids, np.zeros((2, 3), ids.dtype)], axis=1)
    mask = np.concatenate([np.ones_like(ids), np.zeros((2, 3), ids.dtype)], axis=1)
    padded = model(padded_ids, attention_mask=mask).numpy()
    np.testing.assert_allclose(padded[:, :6], alone, rtol=1e-5, atol=1e-5)
    # Without the mask the padding is attended to, and the outputs move.
    unmasked = model(padded_ids).numpy()
    assert np.abs(unmasked[:, :6] - alone).max() > 1e-2


def test_boolean_and_integer_attention_masks_agree():
    model, batch = noisy_bert(), padded_batch()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    np.testing.assert_array_equal(
        model(ids, attention_mask=mask).numpy(), model(ids, attention_mask=mask == 1).numpy()
    )


def test_dropout_only_in_training_mode():
    model = noisy_bert(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    ids = padded_batch()["input_ids"]
    np.testing.assert_array_equal(model(ids).numpy(), model(ids).numpy())
    model.train()
    assert np.abs(model(ids).numpy() - model(ids).numpy()).max() > 1e-3


def test_initialization_as_transformers():
    manual_seed(0)
    model = BERT(
        BERTConfig(
            vocab_size=500,
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=128,
        )
    )
    words = model.embeddings.word_embeddings.weight.numpy()
    np.testing.assert_array_equal(words[0], 0)  # the padding token, pad_token_id=0
    assert abs(words[1:].std() - 0.02) < 1e-3
    query = model.encoder[0].attention.self.query
    assert abs(query.weight.numpy().std() - 0.02) < 2e-3
    np.testing.assert_array_equal(query.bias.numpy(), 0)
    np.testing.assert_array_equal(model.mlm_head.bias.numpy(), 0)
    np.testing.assert_array_equal(model.encoder[0].output.LayerNorm.weight.numpy(), 1)


def test_loss_counts_only_labelled_positions():
    model, batch = noisy_bert(), padded_batch()
    logits, loss = model(**batch)
    logits = logits.numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    rows, columns = np.nonzero(batch["labels"] != -100)
    expected = -log_probs[rows, columns, batch["labels"][rows, columns]].mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# -- training ------------------------------------------------------------------------


def test_a_few_adamw_steps_lower_the_masked_lm_loss():
    # Sequences [CLS] a a ... a [SEP] of one content token a: a masked position follows from
    # the others, once attention gathers them.
    pad, cls, sep, mask, first, count = 0, 1, 2, 3, 4, 8
    manual_seed(0)
    model = BERT(
        BERTConfig(
            vocab_size=first + count,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=12,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    )
    optimizer = AdamW(weight_decay_groups(model, 0.01), lr=1e-2)
    generator = np.random.default_rng(0)
    losses = []
    for _ in range(40):
        content = generator.integers(first, first + count, size=(32, 1))
        ids = np.concatenate(
            [np.full((32, 1), cls), np.repeat(content, 8, axis=1), np.full((32, 1), sep)], axis=1
        )  # (B, 10)
        masked, labels = mask_tokens(
            ids,
            mask,
            first + count,
            generator,
            special_token_ids=(pad, cls, sep),
            mlm_probability=0.3,
        )
        _, loss = model(masked, labels=labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    before, after = np.mean(losses[:5]), np.mean(losses[-5:])
    assert before > 2.0  # about log 12 = 2.48: a uniform guess
    assert after < 0.5 * before, losses


# -- errors --------------------------------------------------------------------------


def test_ids_out_of_range_and_long_sequences_are_refused():
    model = noisy_bert()
    with pytest.raises(IndexError, match="input_ids value 30, outside 0 to 29"):
        model(np.array([[1, 30]]))
    with pytest.raises(IndexError, match="input_ids value -1"):
        model(np.array([[-1, 3]]))
    with pytest.raises(IndexError, match="token_type_ids value 2.*type_vocab_size 2"):
        model(np.array([[1, 3]]), token_type_ids=np.array([[0, 2]]))
    with pytest.raises(ValueError, match="17 tokens, longer than its max_position_embeddings 16"):
        model(np.ones((1, 17), np.int64))
    with pytest.raises(ValueError, match=r"shape \(B, T\).*\[None\]"):
        model(np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="integer input_ids"):
        model(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="1 at real tokens and 0 at padding"):
        model(np.array([[1, 2]]), attention_mask=np.array([[0.0, -np.inf]]))
    with pytest.raises(ValueError, match="attention_mask of shape"):
        model(np.array([[1, 2]]), attention_mask=np.array([[1, 1, 1]]))
    with pytest.raises(IndexError, match="labels are token ids below vocab_size 30"):
        model(np.array([[1, 2]]), labels=np.array([[-100, 30]]))


def test_config_checks_its_shape():
    with pytest.raises(ValueError, match="hidden_size 30 must divide by num_attention_heads 4"):
        BERTConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="pad_token_id 30 lies outside"):
        BERTConfig(**TINY, pad_token_id=30)


def test_a_config_of_another_architecture_is_refused(tmp_path):
    directory = copy_snapshot(tmp_path)
    settings = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(
        json.dumps({**settings, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    with pytest.raises(ValueError, match="type 'gpt2' \\(GPT2LMHeadModel\\), not 'bert'"):
        BERT.from_pretrained(directory)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("hidden_act", "gelu_new", "hidden_act='gelu_new'.*hidden_act='gelu'"),
        ("tie_word_embeddings", False, "tie_word_embeddings=False"),
        ("position_embedding_type", "relative_key", "position_embedding_type='relative_key'"),
        ("is_decoder", True, "is_decoder=True"),
    ],
)
def test_settings_lmcore_cannot_follow_are_named(tmp_path, key, value, message):
    directory = copy_snapshot(tmp_path)
    settings = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**settings, key: value}))
    with pytest.raises(ValueError, match=message):
        BERT.from_pretrained(directory)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    directory = copy_snapshot(tmp_path)
    weights = read_weights(directory)
    del weights["bert.encoder.layer.1.output.dense.bias"]
    del weights["cls.predictions.transform.dense.weight"]
    weights["classifier.weight"] = np.zeros((2, 8), np.float32)
    write_weights(directory, weights)
    with pytest.raises(RuntimeError) as error:
        BERT.from_pretrained(directory)
    message = str(error.value)
    assert (
        "missing keys: bert.encoder.layer.1.output.dense.bias, "
        "cls.predictions.transform.dense.weight" in message
    )
    assert "unexpected keys: classifier.weight" in message


def test_weights_of_another_shape_than_the_config_are_named(tmp_path):
    directory = copy_snapshot(tmp_path)
    settings = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**settings, "vocab_size": 30}))
    with pytest.raises(
        RuntimeError, match=r"word_embeddings.weight: checkpoint \(24, 8\), model \(30, 8\)"
    ):
        BERT.from_pretrained(directory)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no directory"):
        BERT.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        BERT.from_pretrained(tmp_path)
    directory = copy_snapshot(tmp_path)
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="only pytorch_model.bin; lmcore reads safetensors"):
        BERT.from_pretrained(directory)


# -- the snapshot that transformers wrote ---------------------------------------------


def test_snapshot_hidden_states_logits_and_loss():
    expected = np.load(SNAPSHOT / "expected.npz")
    model = BERT.from_pretrained(SNAPSHOT)
    batch = {name: expected[name] for name in ("input_ids", "attention_mask", "token_type_ids")}
    np.testing.assert_allclose(
        model.encode(**batch).numpy(), expected["hidden_states"], rtol=1e-5, atol=1e-5
    )
    logits, loss = model(**batch, labels=expected["labels"])
    np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=1e-5, atol=1e-5)
    assert loss.item() == pytest.approx(float(expected["loss"]), rel=1e-5)


def test_saving_writes_what_transformers_writes(tmp_path):
    model = BERT.from_pretrained(SNAPSHOT)
    model.save_pretrained(tmp_path)
    theirs, ours = read_weights(SNAPSHOT), read_weights(tmp_path)
    assert sorted(ours) == sorted(theirs)
    for name, array in theirs.items():
        np.testing.assert_array_equal(ours[name], array, err_msg=name)
    their_config = json.loads((SNAPSHOT / "config.json").read_text())
    our_config = json.loads((tmp_path / "config.json").read_text())
    for key, value in our_config.items():
        assert their_config.get(key, value) == value, key
    assert {"model_type", "architectures", "hidden_act", "vocab_size"} <= set(our_config)


def test_stored_tied_weights_are_accepted_when_equal(tmp_path):
    expected = np.load(SNAPSHOT / "expected.npz")
    ids = expected["input_ids"]
    directory = copy_snapshot(tmp_path)
    weights = read_weights(directory)
    weights["cls.predictions.decoder.weight"] = weights["bert.embeddings.word_embeddings.weight"]
    weights["cls.predictions.decoder.bias"] = weights.pop("cls.predictions.bias")  # only this one
    write_weights(directory, weights)
    logits = BERT.from_pretrained(directory)(
        ids, expected["attention_mask"], expected["token_type_ids"]
    )
    np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=1e-5, atol=1e-5)
    weights["cls.predictions.decoder.weight"] = weights["cls.predictions.decoder.weight"] + 1
    write_weights(directory, weights)
    with pytest.raises(
        RuntimeError, match="untied weights: cls.predictions.decoder.weight differs"
    ):
        BERT.from_pretrained(directory)


def test_pretraining_heads_and_old_layer_norm_names_are_read(tmp_path):
    expected = np.load(SNAPSHOT / "expected.npz")
    directory = copy_snapshot(tmp_path)
    weights = {
        name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): array
        for name, array in read_weights(directory).items()
    }
    weights["bert.pooler.dense.weight"] = np.zeros((8, 8), np.float32)
    weights["cls.seq_relationship.bias"] = np.zeros(2, np.float32)
    weights["bert.embeddings.position_ids"] = np.arange(12)[None]
    write_weights(directory, weights)
    model = BERT.from_pretrained(directory)
    logits = model(expected["input_ids"], expected["attention_mask"], expected["token_type_ids"])
    np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=1e-5, atol=1e-5)


def test_round_trip_through_files_in_float64(tmp_path):
    model = noisy_bert().to("float64")
    model.save_pretrained(tmp_path)
    again = BERT.from_pretrained(tmp_path, dtype="float64")
    assert again.config == model.config
    batch = padded_batch()
    np.testing.assert_array_equal(again(**batch)[0].numpy(), model(**batch)[0].numpy())


# -- transformers, live --------------------------------------------------------------


@pytest.fixture
def transformers():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


def torch_batch(batch):
    import torch

    return {name: torch.tensor(value) for name, value in batch.items()}


def test_transformers_loads_what_lmcore_saves(tmp_path, transformers):
    import torch

    model = noisy_bert(seed=3)
    model.save_pretrained(tmp_path)
    theirs, info = transformers.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    batch = padded_batch()
    with torch.no_grad():
        output = theirs.eval()(**torch_batch(batch))
    logits, loss = model(**batch)
    np.testing.assert_allclose(logits.numpy(), output.logits.numpy(), rtol=1e-5, atol=1e-5)
    assert loss.item() == pytest.approx(output.loss.item(), rel=1e-5)


@pytest.mark.parametrize("head", ["BertForMaskedLM", "BertForPreTraining"])
def test_lmcore_loads_what_transformers_saves(tmp_path, transformers, head):
    import torch

    torch.manual_seed(4)
    config = transformers.BertConfig(**TINY, hidden_act="gelu")
    theirs = getattr(transformers, head)(config).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    theirs.save_pretrained(tmp_path)
    batch = padded_batch()
    del batch["labels"]
    with torch.no_grad():
        output = theirs(**torch_batch(batch))
        hidden = theirs.bert(**torch_batch(batch)).last_hidden_state
    expected = output.logits if head == "BertForMaskedLM" else output.prediction_logits
    model = BERT.from_pretrained(tmp_path)
    np.testing.assert_allclose(model.encode(**batch).numpy(), hidden.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model(**batch).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


# -- the GPU -------------------------------------------------------------------------


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_gpu_matches_cpu():
    model, batch = noisy_bert().to("float64"), padded_batch()
    logits, loss = model(**batch)
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
    model.zero_grad()
    model.to("cuda")
    gpu = {name: backend.to_device(value, "cuda") for name, value in batch.items()}
    gpu_logits, gpu_loss = model(**gpu)
    gpu_loss.backward()
    np.testing.assert_allclose(
        backend.to_device(gpu_logits.data, "cpu"), logits.numpy(), atol=1e-10
    )
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], atol=1e-10)
