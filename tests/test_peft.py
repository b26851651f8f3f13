"""Parameter-efficient fine-tuning: LoRA (merge, unmerge, saving the adapter alone, PEFT's
file layout), bottleneck adapters, prompt tuning, BitFit, and trainable parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmcore import nn, optim
from lmcore.autograd import Tensor, no_grad
from lmcore.gradcheck import gradcheck
from lmcore.models import BERT, GPT, BERTConfig, GPTConfig
from lmcore.models.heads import SequenceClassifier, TokenClassifier
from lmcore.peft import (
    AdapterConfig,
    BitFitConfig,
    LoraConfig,
    LoraLinear,
    PeftModel,
    PromptTuningConfig,
    get_peft_model,
    hf_module_paths,
)

DATA = Path(__file__).parent / "data"
CONFIG = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)
IDS = np.random.default_rng(0).integers(0, 40, (3, 10))


def gpt(seed=0, config=CONFIG) -> GPT:
    from lmcore import rng

    rng.manual_seed(seed)
    return GPT(config).eval()


def logits(model, ids=IDS) -> np.ndarray:
    with no_grad():
        return model(ids).numpy()


def randomize_lora(model, seed=1) -> None:
    """Give every LoRA B a non-zero value, as after training."""
    generator = np.random.default_rng(seed)
    for module in model.modules():
        if isinstance(module, LoraLinear):
            w = module.lora_B.weight
            w.data[...] = generator.normal(0, 0.3, w.shape)


LORA = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"])


def test_fresh_lora_model_equals_base_and_shares_its_weights():
    base = gpt()
    before = logits(base)
    weight = base.h[0].attn.c_attn.weight
    model = get_peft_model(base, LORA)
    np.testing.assert_array_equal(logits(model), before)
    assert model.base_model is base
    assert model.base_model.h[0].attn.c_attn.base_layer.weight is weight  # not copied


def test_only_adapter_parameters_train():
    model = get_peft_model(gpt(), LORA)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # 2 layers x (c_attn 4*(16+48) + attn.c_proj 4*32 + c_fc 4*(16+64) + mlp.c_proj 4*(64+16))
    assert model.num_parameters(only_trainable=True) == 2 * (256 + 128 + 320 + 320)
    opt = optim.AdamW(p for p in model.parameters() if p.requires_grad)
    _, loss = model(IDS, IDS)
    loss.backward()
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    opt.step()


def test_print_trainable_parameters_format(capsys):
    model = get_peft_model(gpt(), LORA)
    model.print_trainable_parameters()
    trainable, total = model.get_nb_trainable_parameters()
    out = capsys.readouterr().out.strip()
    assert out == (
        f"trainable params: {trainable:,d} || all params: {total:,d} || "
        f"trainable%: {100 * trainable / total:.4f}"
    )


def test_merge_gives_the_same_outputs_and_unmerge_restores_the_weights():
    base = gpt()
    originals = {k: v.copy() for k, v in base.state_dict().items()}
    model = get_peft_model(base, LORA)
    randomize_lora(model)
    unmerged = logits(model)
    assert np.abs(unmerged - logits(gpt())).max() > 1e-2  # the update matters
    model.merge_adapter()
    np.testing.assert_allclose(logits(model), unmerged, rtol=1e-5, atol=1e-5)
    model.unmerge_adapter()
    np.testing.assert_allclose(logits(model), unmerged, rtol=1e-5, atol=1e-5)
    plain = model.unload()
    for name, value in plain.state_dict().items():
        np.testing.assert_allclose(value, originals[name], rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="not merged"):
        LoraLinear(nn.Linear(2, 2), r=1).unmerge()


def test_merge_and_unload_gives_a_plain_model():
    model = get_peft_model(gpt(), LORA)
    randomize_lora(model)
    expected = logits(model)
    plain = model.merge_and_unload()
    assert isinstance(plain, GPT) and not any(isinstance(m, LoraLinear) for m in plain.modules())
    np.testing.assert_allclose(logits(plain), expected, rtol=1e-5, atol=1e-5)


def test_lora_linear_gradcheck_float64():
    layer = LoraLinear(nn.Linear(5, 3, dtype="float64"), r=2, lora_alpha=3).double()
    layer.lora_B.weight.data[...] = np.random.default_rng(0).normal(size=(3, 2))
    layer.base_layer.requires_grad_(True)
    x = Tensor(np.random.default_rng(1).normal(size=(4, 5)), requires_grad=True)
    a, b = layer.lora_A.weight, layer.lora_B.weight
    w, bias = layer.base_layer.weight, layer.base_layer.bias

    def fn(x, a, b, w, bias):
        tensors = {"lora_A.weight": a, "lora_B.weight": b, "base_layer.weight": w}
        return nn.functional_call(layer, tensors | {"base_layer.bias": bias}, x)

    assert gradcheck(fn, x, a, b, w, bias)


def test_lora_forward_is_the_formula():
    base = nn.Linear(6, 4)
    layer = LoraLinear(base, r=3, lora_alpha=6, use_rslora=False)
    layer.lora_B.weight.data[...] = 1.0
    x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    expected = x @ base.weight.data.T + base.bias.data
    expected += 2.0 * x @ layer.lora_A.weight.data.T @ layer.lora_B.weight.data.T
    np.testing.assert_allclose(layer(Tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert LoraConfig(r=4, lora_alpha=8, use_rslora=True).scaling == 4.0


def test_adapter_saved_alone_loads_onto_a_fresh_base(tmp_path):
    model = get_peft_model(gpt(seed=3), LORA)
    randomize_lora(model)
    expected = logits(model)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    from safetensors.numpy import load_file

    keys = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert "base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight" in keys
    assert all("lora_" in k for k in keys)  # the adapter alone, no base weights
    loaded = PeftModel.from_pretrained(gpt(seed=3), tmp_path)
    np.testing.assert_allclose(logits(loaded), expected, rtol=1e-6, atol=1e-6)
    assert loaded.num_parameters(only_trainable=True) == 0  # frozen unless is_trainable
    with pytest.raises(ValueError, match="lacks"):
        PeftModel.from_pretrained(gpt(config=GPTConfig(40, 16, 1, 2, 16)), tmp_path)


def test_snapshot_of_an_adapter_written_by_peft():
    """tests/data/peft_lora was written by Hugging Face PEFT (make_peft_lora_snapshot.py)
    on the GPT-2 of tests/data/hf_gpt2/untied_float32."""
    base = GPT.from_pretrained(DATA / "hf_gpt2" / "untied_float32")
    model = PeftModel.from_pretrained(base, DATA / "peft_lora")
    expected = np.load(DATA / "peft_lora" / "expected.npz")
    np.testing.assert_allclose(logits(model, expected["ids"]), expected["logits"], atol=2e-5)
    plain = model.merge_and_unload()  # PEFT's Conv1D weight is (in, out): ours transposed
    np.testing.assert_allclose(
        plain.h[0].attn.c_attn.weight.data.T, expected["merged_c_attn"], atol=1e-6
    )


def test_config_written_as_peft_reads_it(tmp_path):
    get_peft_model(gpt(), LORA).save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "adapter_config.json").read_text())
    assert settings["peft_type"] == "LORA" and settings["r"] == 4 and settings["lora_alpha"] == 8
    assert settings["fan_in_fan_out"] is True and settings["target_modules"] == [
        "c_attn",
        "c_proj",
        "c_fc",
    ]


def test_hf_module_paths_of_heads_and_bert():
    bert = BERT(BERTConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=16))  # fmt: skip
    paths = hf_module_paths(bert)
    assert paths["encoder.0.attention.self.query"] == "bert.encoder.layer.0.attention.self.query"
    assert paths["mlm_head.transform.dense"] == "cls.predictions.transform.dense"
    head = hf_module_paths(SequenceClassifier(bert, 2))
    assert head["bert.encoder.0.output.dense"] == "bert.encoder.layer.0.output.dense"
    assert hf_module_paths(SequenceClassifier(gpt(), 2))["transformer.h.0.attn"] == (
        "transformer.h.0.attn"
    )


def test_lora_on_a_classifier_trains_adapter_and_head(tmp_path):
    model = get_peft_model(SequenceClassifier(gpt(), 3), LoraConfig(r=2, target_modules=["c_attn"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "base_model.score.weight" in trainable
    assert all("lora_" in n or "score" in n for n in trainable)
    randomize_lora(model)
    model.base_model.score.weight.data[...] += 0.5
    expected = logits(model)
    model.save_pretrained(tmp_path)
    fresh = PeftModel.from_pretrained(SequenceClassifier(gpt(), 3), tmp_path)
    np.testing.assert_allclose(logits(fresh), expected, rtol=1e-6, atol=1e-6)


def test_bad_targets_say_what_exists():
    with pytest.raises(ValueError, match="its Linear layers are: .*c_attn"):
        get_peft_model(gpt(), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(TypeError, match="LoRA wraps Linear"):
        get_peft_model(gpt(), LoraConfig(target_modules=["ln_f"]))


def test_houlsby_adapters_start_equal_and_train_alone():
    base = gpt()
    before = logits(base)
    model = get_peft_model(base, AdapterConfig(bottleneck=4, train_layer_norms=False))
    np.testing.assert_array_equal(logits(model), before)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 2 * 4  # 2 layers x (attn, mlp) x (down, up) x (weight, bias)
    assert all(".adapter." in n for n in trainable)
    bert = BERT(BERTConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=16)).eval()  # fmt: skip
    ids = np.array([[2, 5, 6, 0]])
    expected = bert(ids).numpy()
    wrapped = get_peft_model(bert, AdapterConfig(bottleneck=2))
    np.testing.assert_allclose(wrapped(ids).numpy(), expected, atol=1e-6)
    assert sum(".adapter." in n for n, _ in wrapped.named_parameters()) == 2 * 2 * 4


def test_prompt_tuning_trains_the_prompt_only(tmp_path):
    model = get_peft_model(gpt(), PromptTuningConfig(num_virtual_tokens=3))
    assert model.num_parameters(only_trainable=True) == 3 * 16
    logits_, loss = model(IDS, IDS)
    assert logits_.shape == (3, 10, 40)
    loss.backward()
    assert model.prompt_embeddings.grad.numpy().any()
    model.save_pretrained(tmp_path)
    again = PeftModel.from_pretrained(gpt(), tmp_path)
    np.testing.assert_allclose(logits(again), logits(model), atol=1e-6)
    with pytest.raises(ValueError, match="block_size"):
        model(np.zeros((1, 15), np.int64))  # 3 + 15 positions > 16


def test_prompt_tuned_generation_reads_the_soft_prompt():
    """Greedy generation of a prompt-tuned GPT equals a loop that puts the soft prompt
    before the ids and takes the argmax of the model's forward, step by step, past the
    block too; it differs from the base model's, and the cache changes nothing."""
    base = gpt()
    plain = base.generate(IDS[:1, :4], 20, temperature=0)
    model = get_peft_model(base, PromptTuningConfig(num_virtual_tokens=3, seed=1))
    model.prompt_embeddings.data[...] *= 20  # a prompt strong enough to change the argmax
    tuned = model.generate(IDS[:1, :4], 20, temperature=0)  # 3 + 24 > block_size 16
    ids = IDS[:1, :4]
    room = CONFIG.block_size - 3
    with no_grad():
        for _ in range(20):
            step = model(ids[:, -room:]).numpy()[:, -1]  # the forward: prompt before the ids
            ids = np.concatenate([ids, step.argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(tuned, ids)
    assert not np.array_equal(tuned, plain)
    np.testing.assert_array_equal(
        model.generate(IDS[:1, :4], 20, temperature=0, use_cache=False), tuned
    )
    sampled = model.generate(IDS[:2, :4], 8, top_k=5, seed=3)
    assert sampled.shape == (2, 12)
    np.testing.assert_array_equal(
        sampled, model.generate(IDS[:2, :4], 8, top_k=5, seed=3, use_cache=False)
    )
    with pytest.raises(TypeError, match="classifies and does not generate"):
        get_peft_model(SequenceClassifier(gpt(), 2), PromptTuningConfig(3)).generate(IDS[:1], 2)


def test_bitfit_trains_biases_and_head():
    model = get_peft_model(TokenClassifier(gpt(), 4), BitFitConfig())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.endswith("bias") or ".classifier." in n for n in trainable)
    assert "base_model.classifier.weight" in trainable


# -- live comparison with Hugging Face PEFT, where installed -------------------------------


def _hf():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from transformers import GPT2LMHeadModel

    return torch, peft, GPT2LMHeadModel


def test_lmcore_adapter_loads_into_peft(tmp_path):
    torch, peft, GPT2LMHeadModel = _hf()
    base = gpt(seed=5)
    base.save_pretrained(tmp_path / "base")
    model = get_peft_model(base, LORA)
    randomize_lora(model)
    expected = logits(model)
    model.save_pretrained(tmp_path / "adapter")
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "base").eval()
    hf = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        theirs = hf(torch.tensor(IDS)).logits.numpy()
    np.testing.assert_allclose(theirs, expected, rtol=1e-4, atol=1e-4)


def test_peft_adapter_loads_into_lmcore(tmp_path):
    torch, peft, GPT2LMHeadModel = _hf()
    gpt(seed=6).save_pretrained(tmp_path / "base")
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "base").eval()
    torch.manual_seed(0)
    config = peft.LoraConfig(
        r=3, lora_alpha=5, target_modules=["c_attn", "c_fc"], init_lora_weights=False
    )
    hf = peft.get_peft_model(hf, config).eval()
    hf.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        theirs = hf(torch.tensor(IDS)).logits.numpy()
    ours = PeftModel.from_pretrained(GPT.from_pretrained(tmp_path / "base"), tmp_path / "adapter")
    np.testing.assert_allclose(logits(ours), theirs, rtol=1e-4, atol=1e-4)


def test_prompt_tuning_on_a_classification_head_trains_prompt_and_head(tmp_path):
    """A soft prompt before a SequenceClassifier's input: the head reads the real
    positions only, prompt and head train, the backbone does not, and the adapter file
    (prompt and head) loads back to the same outputs."""
    head = SequenceClassifier(gpt(), num_labels=3)
    model = get_peft_model(head, PromptTuningConfig(num_virtual_tokens=3))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_embeddings", "base_model.score.weight"}
    ids = np.array([[1, 2, 3, 4], [5, 6, 0, 0]])
    mask = ids != 0
    logits, loss = model(ids, np.array([0, 2]), attention_mask=mask)
    assert logits.shape == (2, 3)
    loss.backward()
    assert np.asarray(model.prompt_embeddings.grad).any()
    assert np.asarray(head.score.weight.grad).any()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    # the padded row gives what its unpadded tokens alone give
    alone = model(ids[1:, :2])
    np.testing.assert_allclose(alone.numpy(), logits.numpy()[1:], rtol=1e-5, atol=1e-6)
    model.prompt_embeddings.data[...] += 0.5
    head.score.weight.data[...] += 0.1
    model.save_pretrained(tmp_path)
    again = PeftModel.from_pretrained(SequenceClassifier(gpt(), num_labels=3), tmp_path)
    again.base_model.transformer.load_state_dict(head.transformer.state_dict())
    np.testing.assert_allclose(
        again(ids, attention_mask=mask).numpy(),
        model(ids, attention_mask=mask).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_lora_on_a_llama_targets_its_projections_and_saves_under_hf_names(tmp_path):
    from lmcore.models.llama import Llama, LlamaConfig
    from lmcore.peft.lora import lora_layers
    from lmcore.rng import manual_seed

    config = LlamaConfig(vocab_size=40, block_size=16, n_layer=2, n_head=4, n_kv_head=2,
                         n_embd=16, intermediate_size=24)  # fmt: skip

    def llama():
        manual_seed(5)
        return Llama(config)

    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(llama(), lora)
    assert sorted(lora_layers(model.base_model)) == [
        f"layers.{i}.self_attn.{p}" for i in (0, 1) for p in ("q_proj", "v_proj")
    ]
    assert hf_module_paths(model.base_model)["layers.1.mlp.down_proj"] == (
        "model.layers.1.mlp.down_proj"
    )
    randomize_lora(model)
    expected = logits(model, IDS[:, :8])
    model.save_pretrained(tmp_path)
    from safetensors.numpy import load_file

    keys = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    loaded = PeftModel.from_pretrained(llama(), tmp_path)
    np.testing.assert_allclose(logits(loaded, IDS[:, :8]), expected, rtol=1e-6, atol=1e-6)
