"""Fine-tuning: task heads, padded and bucketed batches, freezing, layer-wise learning
rates, gradual unfreezing, early stopping and exact resumption, and the task data."""

from __future__ import annotations

import numpy as np
import pytest

from lmcore import optim, rng
from lmcore.autograd import Tensor, no_grad
from lmcore.data import BucketBatches, pad_sequences, tasks
from lmcore.data import instructions as ins
from lmcore.gradcheck import gradcheck
from lmcore.models import BERT, GPT, BERTConfig, GPTConfig, SequenceClassifier, TokenClassifier
from lmcore.models.heads import pool
from lmcore.nn.freezing import (
    GradualUnfreezing,
    count_parameters,
    freeze,
    layer_groups,
    layerwise_lr_groups,
    trainable_parameters,
    unfreeze,
)
from lmcore.peft import LoraConfig, get_peft_model
from lmcore.train import Trainer, load_checkpoint

PAD = 0
CONFIG = GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=16)


def gpt(seed=0) -> GPT:
    rng.manual_seed(seed)
    return GPT(CONFIG)


def bert(seed=0) -> BERT:
    rng.manual_seed(seed)
    return BERT(BERTConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=32,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))  # fmt: skip


def toy_task(n=48, seed=0):
    """Sequences of 2-9 tokens (ids 1..29, 0 pads); the label is whether token 7 occurs."""
    generator = np.random.default_rng(seed)
    sequences = [list(generator.integers(1, 30, int(generator.integers(2, 10)))) for _ in range(n)]
    return sequences, [int(7 in s) for s in sequences]


# -- heads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["last", "mean", "first"])
def test_padding_does_not_change_a_sequence_classification(pooling):
    model = SequenceClassifier(gpt(), 3, pooling=pooling, pad_token_id=PAD).eval()
    alone = model(np.array([[4, 5, 6]])).numpy()
    padded = model(np.array([[4, 5, 6, 0, 0], [8, 9, 0, 0, 0]])).numpy()
    np.testing.assert_allclose(padded[:1], alone, rtol=1e-5, atol=1e-6)


def test_bert_classifier_pools_the_first_token_and_ignores_padding():
    model = SequenceClassifier(bert(), 2).eval()
    assert model.pooling == "first" and "bert" in model._modules and "classifier" in model._modules
    alone = model(np.array([[2, 5, 6]])).numpy()
    padded = model(np.array([[2, 5, 6, 0]])).numpy()  # BERT's pad id 0 from its config
    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-6)


def test_token_classifier_on_both_backbones():
    ids, tags = np.array([[3, 4, 5, 0]]), np.array([[1, 2, 0, -100]])
    for backbone in (gpt(), bert()):
        logits, loss = TokenClassifier(backbone, 5, pad_token_id=PAD)(ids, tags)
        assert logits.shape == (1, 4, 5) and np.isfinite(loss.item())
    with pytest.raises(ValueError, match="one tag per token"):
        TokenClassifier(gpt(), 5)(ids, np.array([1, 2]))


def test_pooling_gradcheck_float64():
    mask = np.array([[True, True, False], [True, False, False]])
    for how in ("last", "mean", "first"):
        h = Tensor(np.random.default_rng(0).normal(size=(2, 3, 4)), requires_grad=True)
        assert gradcheck(lambda t, how=how: pool(t, mask, how), h)


def test_head_errors_are_clear():
    with pytest.raises(TypeError, match="GPT or BERT"):
        SequenceClassifier(object(), 2)
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(gpt(), 2, pooling="max")
    with pytest.raises(ValueError, match="no real token"):
        SequenceClassifier(gpt(), 2, pad_token_id=PAD)(np.array([[0, 0]]))


# -- batches ----------------------------------------------------------------------------------


def test_bucket_batches_cover_every_example_once_with_little_padding():
    sequences, labels = toy_task(200)
    batches = BucketBatches(sequences, labels, batch_size=8, pad_token_id=PAD, bucket_size=5)
    seen = []
    for ids, y in batches:
        assert ids.shape[0] == y.shape[0] <= 8
        for row, label in zip(ids, y):
            seen.append((tuple(int(t) for t in row if t != PAD), int(label)))
    assert sorted(seen) == sorted((tuple(s), label) for s, label in zip(sequences, labels))
    unsorted = 1 - sum(map(len, sequences)) / sum(
        8 * max(len(s) for s in sequences[i : i + 8]) for i in range(0, 200, 8)
    )
    assert batches.padding_fraction() < unsorted
    first, again = list(batches.batch_indices(0)), list(batches.batch_indices(0))
    assert all((a == b).all() for a, b in zip(first, again))  # a pass is reproducible


def test_per_token_labels_are_padded_with_ignore_index():
    batches = BucketBatches([[1, 2, 3], [4]], [[0, 1, 2], [3]], 2, PAD, shuffle=False,
                            with_mask=True)  # fmt: skip
    ids, tags, mask = next(iter(batches))
    assert tags.tolist() == [[3, -100, -100], [0, 1, 2]] and mask.sum() == 4
    with pytest.raises(ValueError, match="one tag per token"):
        BucketBatches([[1, 2]], [[0]], 1, PAD)
    with pytest.raises(ValueError, match="empty"):
        pad_sequences([[1], []], PAD)


# -- freezing ---------------------------------------------------------------------------------


def test_freeze_by_pattern_and_module():
    model = gpt()
    freeze(model)
    assert count_parameters(model)[0] == 0
    assert unfreeze(model, "h.1.*") and all(
        n.startswith("h.1.") for n, p in model.named_parameters() if p.requires_grad
    )
    import re

    unfreeze(model, re.compile(r"ln_f\.(weight|bias)"), modules=[model.h[0].attn])
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"ln_f.weight", "h.0.attn.c_attn.weight"} <= names and "h.0.mlp.c_fc.weight" not in names
    assert count_parameters(model)[0] == model.num_parameters(only_trainable=True)
    assert len(trainable_parameters(model)) == len(names)
    with pytest.raises(ValueError, match="no parameter"):
        freeze(model, "encoder.*")


def test_layerwise_learning_rates_decay_downwards():
    model = SequenceClassifier(gpt(), 2)
    assert [g for g, _ in layer_groups(model)] == ["embeddings", "transformer.h.0",
                                                   "transformer.h.1", "top"]  # fmt: skip
    groups = layerwise_lr_groups(model, lr=1.0, decay=0.5, weight_decay=0.1)
    lrs = sorted({g["lr"] for g in groups})
    assert lrs == [0.125, 0.25, 0.5, 1.0]
    by_id = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert by_id[id(model.score.weight)] == 1.0 and by_id[id(model.transformer.wte.weight)] == 0.125
    optim.AdamW(groups)  # the optimizer takes them as they are
    freeze(model, "transformer.*")
    frozen = layerwise_lr_groups(model, lr=1.0)
    assert sum(len(g["params"]) for g in frozen) == 1  # the optimizer sees the head only


def test_gradual_unfreezing_by_step():
    model = SequenceClassifier(gpt(), 2)
    unfreezing = GradualUnfreezing(model, every=3)
    assert unfreezing.apply(1) == ["top"]
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "transformer.ln_f.weight", "transformer.ln_f.bias", "score.weight",
    }  # fmt: skip
    assert unfreezing.apply(4) == ["top", "transformer.h.1"]
    assert (
        len(unfreezing.apply(100)) == 4 and count_parameters(model)[0] == count_parameters(model)[1]
    )


# -- training: early stopping, resumption -----------------------------------------------------


def classifier_run(steps, seed=0, path=None, resume=None, callbacks=(), lora=False, **options):
    rng.manual_seed(seed)
    model = SequenceClassifier(gpt(seed), 2, pad_token_id=PAD)
    if lora:
        model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"]))
    sequences, labels = toy_task(64)
    batches = BucketBatches(sequences, labels, batch_size=8, pad_token_id=PAD, seed=1)
    val = BucketBatches(*toy_task(32, seed=5), batch_size=32, pad_token_id=PAD, shuffle=False)
    groups = layerwise_lr_groups(model, lr=3e-3, decay=0.8, only_trainable=not callbacks)
    callbacks = [c(model) for c in callbacks]
    trainer = Trainer(
        model, optim.AdamW(groups), batches, steps, val_batches=val, eval_every=4,
        checkpoint=path, checkpoint_every=4, resume_from=resume, progress=False,
        callbacks=callbacks, **options,
    )  # fmt: skip
    return model, trainer.run(), trainer


def weights(model) -> dict:
    return {k: v.copy() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("lora", [False, True])
def test_fine_tuning_resumes_exactly(tmp_path, lora):
    unfreeze_every = [] if lora else [lambda m: GradualUnfreezing(m, every=3)]
    straight_model, straight, _ = classifier_run(16, lora=lora, callbacks=unfreeze_every)
    path = tmp_path / "run.safetensors"
    classifier_run(8, path=path, lora=lora, callbacks=unfreeze_every)
    model, resumed, _ = classifier_run(16, seed=9, path=path, resume=path, lora=lora,
                                       callbacks=unfreeze_every)  # fmt: skip
    assert resumed.train_loss == straight.train_loss and resumed.val_loss == straight.val_loss
    assert same_weights(weights(model), weights(straight_model))


def test_early_stopping_restores_the_best_weights_across_a_resume(tmp_path):
    rigged = [3.0, 2.0, 2.5, 1.5, 1.8, 1.9, 1.7, 2.2]  # best at step 16, stop after step 24
    snapshots = {}

    def run(steps, path=None, resume=None, seed=0):
        values = iter(rigged[len(load_checkpoint(resume).state["history"]["val_loss"]) :]
                      if resume else rigged)  # fmt: skip
        holder = {}

        def eval_fn():
            step = 4 * (len(holder["trainer"].history.val_loss) + 1)
            snapshots[step] = weights(holder["trainer"].model)
            return next(values)

        rng.manual_seed(seed)
        model = SequenceClassifier(gpt(seed), 2, pad_token_id=PAD)
        sequences, labels = toy_task(64)
        batches = BucketBatches(sequences, labels, batch_size=8, pad_token_id=PAD, seed=1)
        trainer = Trainer(model, optim.AdamW(model.parameters(), lr=1e-2), batches, steps,
                          eval_fn=eval_fn, eval_every=4, patience=2, checkpoint=path,
                          checkpoint_every=4, resume_from=resume, progress=False)  # fmt: skip
        holder["trainer"] = trainer
        return model, trainer.run()

    model, history = run(100)
    assert history.val_step[-1] == 24 and history.best == (16, 1.5)
    assert same_weights(weights(model), snapshots[16])
    path = tmp_path / "stop.safetensors"
    run(12, path=path)  # interrupted before the best evaluation...
    resumed_model, resumed = run(100, path=path, resume=path, seed=4)  # ...and resumed
    assert resumed.val_loss == history.val_loss
    assert same_weights(weights(resumed_model), weights(model))


def test_early_stopping_on_an_accuracy_and_without_restoring():
    model = SequenceClassifier(gpt(), 2, pad_token_id=PAD)
    values = iter([0.5, 0.7, 0.6, 0.65, 0.9])
    batches = BucketBatches(*toy_task(32), batch_size=8, pad_token_id=PAD)
    trainer = Trainer(model, optim.AdamW(model.parameters(), lr=1e-2), batches, 100,
                      eval_fn=lambda: next(values), eval_every=2, patience=2,
                      early_stopping_mode="max", restore_best=False, progress=False)  # fmt: skip
    history = trainer.run()
    assert history.val_step[-1] == 8 and trainer.stopper.best_step == 4
    assert not same_weights(weights(model), trainer.stopper.best_weights)  # not restored


def test_a_fine_tuned_classifier_learns_the_toy_task():
    model, history, _ = classifier_run(60)
    assert np.mean(history.train_loss[-10:]) < 0.7 * np.mean(history.train_loss[:10])


# -- task data --------------------------------------------------------------------------------


def test_genre_task_is_split_by_play_with_first_folio_labels():
    assert len(tasks.FIRST_FOLIO_GENRES) == 36
    assert sorted(set(tasks.FIRST_FOLIO_GENRES.values())) == list(tasks.GENRES)
    train = tasks.genre_passages("train", passage_chars=2000, max_per_play=3)
    test = tasks.genre_passages("test", passage_chars=2000, max_per_play=3)
    assert not {r.source for r in train} & {r.source for r in test}
    assert "pericles" not in {r.source for r in train} and len({r.source for r in train}) == 30


def test_sentiment_splits_are_disjoint_and_balanced():
    parts = {s: tasks.sentiment_task(s, ["amazon", "imdb"]) for s in ("train", "val", "test")}
    assert sum(len(rows) for rows in parts.values()) == 2000
    assert [round(len(parts[s]), -1) for s in parts] == [1600, 200, 200]
    texts = [{(r.source, r.text) for r in rows} for rows in parts.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2])
    with pytest.raises(ValueError, match="unknown sentiment domain"):
        tasks.sentiment_task("train", "twitter")


def test_tagging_passages_hold_valid_bio_tags():
    from lmcore.metrics import bio_entities

    passages = tasks.tagging_passages("val", max_words=50)
    assert {p.source for p in passages} == {"twelfth-night", "julius-caesar", "richard-ii"}
    for p in passages[:200]:
        assert len(p.tokens) == len(p.tags) and set(p.tags) <= set(tasks.TAGS)
        assert not p.tags[0].startswith("I-")
    first = passages[0]
    speakers = [
        first.tokens[a] for kind, a, b in bio_entities(list(first.tags)) if kind == "SPEAKER"
    ]
    assert speakers[0] == "DUKE"


def test_instruction_loss_is_masked_to_the_response_and_packing_keeps_it():
    def encode(text):
        return [ord(c) % 29 for c in text]

    examples = [ins.Instruction("Say hi", "hi"), ins.Instruction("Count", "1 2 3", "to three")]
    pairs = [ins.encode_instruction(e, encode, eos_token_id=29) for e in examples]
    for (x, y), example in zip(pairs, examples):
        assert len(x) == len(y) == len(example.prompt) + len(example.response)
        learned = y[y != -100].tolist()
        assert learned == encode(example.response) + [29]
    x, y = ins.pack_examples(pairs, block_size=128, pad_token_id=0)
    assert x.shape == (1, 128) and sorted(y[y != -100].tolist()) == sorted(
        pairs[0][1][pairs[0][1] != -100].tolist() + pairs[1][1][pairs[1][1] != -100].tolist()
    )
    with pytest.raises(ValueError, match="longer than block_size"):
        ins.pack_examples(pairs, block_size=8, pad_token_id=0)
    model = GPT(GPTConfig(vocab_size=30, block_size=128, n_layer=1, n_head=2, n_embd=8))
    with no_grad():
        _, loss = model(x, y)
    assert np.isfinite(loss.item())


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rotary"])
def test_a_packed_example_has_the_logits_of_the_example_alone(positional):
    rng.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=24, n_layer=2, n_head=2, n_embd=16,
                          positional=positional), dtype="float64")  # fmt: skip
    generator = np.random.default_rng(0)
    pairs = []
    for length in (9, 7, 5, 3):
        ids = generator.integers(1, 30, length + 1)
        pairs.append((ids[:-1], ids[1:]))
    x, y, positions = ins.pack_examples(pairs, 24, pad_token_id=0, return_position_ids=True)
    assert x.shape == (1, 24)  # 9 + 7 + 5 + 3: all four in one row
    assert positions[0].tolist() == [*range(9), *range(7), *range(5), *range(3)]
    with no_grad():
        packed = model(x, position_ids=positions).numpy()[0]
        plain = model(x).numpy()[0]  # packing without the positions and the mask
        start = 0
        for a, _ in pairs:
            alone = model(a[None]).numpy()[0]
            np.testing.assert_allclose(packed[start : start + len(a)], alone, rtol=1e-9,
                                       atol=1e-12)  # fmt: skip
            if start:  # plain packing lets a later example see the ones before it
                assert not np.allclose(plain[start : start + len(a)], alone, atol=1e-6)
            start += len(a)
        # the loss of the packed row is the loss of the four examples' targets alone
        _, loss = model(x, y, position_ids=positions)
        alone_nats = [model(a[None], b[None])[1].item() * len(b) for a, b in pairs]
    assert np.isclose(loss.item(), sum(alone_nats) / sum(len(b) for _, b in pairs), rtol=1e-12)


def test_attention_under_a_document_mask_passes_a_gradient_check():
    from lmcore.nn.attention import MultiHeadAttention, document_mask

    rng.manual_seed(0)
    attn = MultiHeadAttention(8, 2, dtype="float64")
    mask = document_mask(np.array([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]))
    assert mask.shape == (2, 5, 5) and not mask[0, 3, :3].any() and mask[1].all()
    x = Tensor(np.random.default_rng(0).normal(size=(2, 5, 8)), requires_grad=True)
    assert gradcheck(lambda t: attn(t, mask), x)
    with pytest.raises(ValueError, match=r"or \(B, Tq, Tk\)"):
        attn(x, mask[:, :4])


def test_packed_rows_train_with_position_ids_and_pad_at_the_end():
    pairs = [(np.arange(1, 4), np.arange(2, 5)), (np.arange(1, 3), np.arange(2, 4))]
    x, y, positions = ins.pack_examples(pairs, 8, pad_token_id=0, return_position_ids=True)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]] and x[0, 5:].tolist() == [0] * 3
    model = gpt()
    model.zero_grad()
    _, loss = model(x, y, position_ids=positions)
    loss.backward()
    assert np.isfinite(loss.item()) and all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="position_ids must be integers of the shape"):
        model(x, position_ids=positions[:, :4])
    with pytest.raises(ValueError, match="position_ids must lie in 0 to block_size - 1"):
        model(x, position_ids=positions + CONFIG.block_size)
    with pytest.raises(ValueError, match="cannot continue a KVCache"):
        model(x, position_ids=positions, past_key_values=model.new_cache(1))


def test_play_instructions_come_from_the_split_only():
    rows = ins.play_instructions("test", per_play=2)
    assert len(rows) == 3 * 3 * 2 and {r.source for r in rows} == {
        "much-ado-about-nothing", "macbeth", "king-john"}  # fmt: skip
    titles = {r.response for r in rows if r.instruction.startswith("Which play")}
    assert titles <= {"Much Ado About Nothing", "Macbeth", "King John"}


def test_chatterbot_pairs_where_installed():
    pytest.importorskip("chatterbot_corpus")
    pytest.importorskip("yaml")
    pairs = ins.chatterbot_pairs()
    assert 2000 < len(pairs) < 3000
    greetings = ins.chatterbot_pairs(["greetings"])
    assert greetings[0].instruction == "Hello" and greetings[0].response == "Hi"
    with pytest.raises(ValueError, match="no chatterbot category"):
        ins.chatterbot_pairs(["klingon"])
