"""The training loop, history, early stopping and checkpoints (atomic, exact resume)."""

import gc
import math

import matplotlib
import numpy as np
import pytest

from lmcore import backend, data, manual_seed, nn, optim
from lmcore.autograd import Tensor, is_grad_enabled
from lmcore.data.batches import ContiguousBatches, RandomWindows, SequentialWindows
from lmcore.models.mlp import MLPLanguageModel
from lmcore.models.rnn import RNNLanguageModel
from lmcore.tokenizers import CharTokenizer
from lmcore.train import (
    CheckpointError,
    NonFiniteLossError,
    default_loss,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train,
)
from lmcore.train.loop import StateCarrier, recurrent_loss

matplotlib.use("Agg")

CONTEXT = 8


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    """Bit-exact claims are made on the CPU; the GPU has its own test at the end."""
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


@pytest.fixture(scope="module")
def corpus():
    """Token ids of a slice of the training plays and of a held-out play slice."""
    train_text, val_text = data.shakespeare("train")[:200_000], data.shakespeare("val")[:20_000]
    tokenizer = CharTokenizer(train_text + val_text)
    encode = lambda text: np.array(tokenizer.encode(text), dtype=np.int64)
    return tokenizer.vocab_size, encode(train_text), encode(val_text)


def make_run(corpus, seed=0, dropout=0.2, lr=3e-3, total_steps=40):
    """A freshly built model, optimizer, scheduler and batch source."""
    vocab_size, train_tokens, _ = corpus
    manual_seed(seed)
    model = MLPLanguageModel(vocab_size, CONTEXT, embed_dim=12, hidden=48, dropout=dropout)
    optimizer = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=lr)
    scheduler = optim.LambdaLR(optimizer, optim.WarmupCosine(5, total_steps, min_factor=0.1))
    batches = RandomWindows(train_tokens, CONTEXT, batch_size=32, seed=seed)
    return model, optimizer, scheduler, batches


def val_set(corpus, size=4_000):
    return SequentialWindows(corpus[2][:size], CONTEXT, batch_size=1024)


def weights_equal(a, b):
    return all((a[k] == b[k]).all() for k in a) and a.keys() == b.keys()


def test_mlp_learns_shakespeare_better_than_unigram_and_records_history(corpus):
    vocab_size, train_tokens, val_tokens = corpus
    counts = np.bincount(train_tokens, minlength=vocab_size) + 1.0  # add-one unigram model
    unigram_loss = -np.log(counts / counts.sum())[val_tokens[CONTEXT:]].mean()
    model, optimizer, scheduler, batches = make_run(corpus, dropout=0.0, lr=1e-2, total_steps=150)
    val = val_set(corpus, size=10_000)
    history = train(
        model, optimizer, batches, 150, scheduler=scheduler, clip=1.0,
        val_batches=val, eval_every=50, progress=False,
    )  # fmt: skip
    assert history.val_loss[-1] < unigram_loss - 0.3, (history.val_loss, unigram_loss)
    assert history.val_loss[-1] == pytest.approx(evaluate(model, val))
    assert model.training  # evaluation restored training mode

    assert history.step == list(range(1, 151)) and len(history) == 150
    assert history.val_step == [50, 100, 150]
    assert history.lr[:2] == pytest.approx([2e-3, 4e-3]) and history.lr[-1] < 2e-3  # warm-up, decay
    assert all(g > 0 for g in history.grad_norm) and all(np.isfinite(history.train_loss))
    assert history.elapsed == sorted(history.elapsed)
    rows = history.rows()
    assert [row["step"] for row in rows] == [50, 100, 150]
    assert rows[0]["train_loss"] == pytest.approx(np.mean(history.train_loss[:50]))
    figure = history.plot()
    assert isinstance(figure, matplotlib.figure.Figure) and len(figure.axes[0].lines) == 2
    assert "best validation loss" in repr(history)


def test_evaluation_runs_in_eval_mode_without_a_graph(corpus):
    model, optimizer, _, batches = make_run(corpus)
    seen = []

    def probe():
        seen.append((model.training, is_grad_enabled()))
        return 1.0

    train(model, optimizer, batches, 4, eval_fn=probe, eval_every=2, progress=False)
    assert seen == [(False, False), (False, False)] and model.training and is_grad_enabled()


def test_early_stopping_stops_and_restores_the_best_weights(corpus):
    model, optimizer, _, batches = make_run(corpus)
    rigged = iter([5.0, 4.0, 3.0, 3.5, 3.2, 1.0])
    snapshots = []

    def eval_fn():
        snapshots.append(model.state_dict())
        return next(rigged)

    history = train(
        model, optimizer, batches, 100, eval_fn=eval_fn, eval_every=5, patience=2,
        progress=False,
    )  # fmt: skip
    assert len(history) == 25 and history.val_step[-1] == 25  # two evaluations without gain
    assert history.best == (15, 3.0)
    assert weights_equal(model.state_dict(), snapshots[2])
    assert not weights_equal(model.state_dict(), snapshots[-1])


def run_with_checkpoints(corpus, steps, path, resume_from=None, seed=0, **settings):
    model, optimizer, scheduler, batches = make_run(corpus, seed=seed)
    history = train(
        model, optimizer, batches, steps, scheduler=scheduler, clip=0.5,
        val_batches=val_set(corpus), eval_every=10, checkpoint=path, checkpoint_every=20,
        resume_from=resume_from, config={"context": CONTEXT}, progress=False, **settings,
    )  # fmt: skip
    return model, optimizer, history


def test_resuming_reproduces_the_uninterrupted_run_exactly(corpus, tmp_path):
    straight_model, straight_optimizer, straight = run_with_checkpoints(
        corpus, 40, tmp_path / "straight.safetensors"
    )
    path = tmp_path / "interrupted.safetensors"
    _, _, first_half = run_with_checkpoints(corpus, 20, path)
    assert first_half.train_loss == straight.train_loss[:20]
    # Rebuilt from other seeds, as in a new process: everything must come from the file.
    model, optimizer, history = run_with_checkpoints(corpus, 40, path, resume_from=path, seed=7)

    assert history.train_loss == straight.train_loss  # bit for bit
    assert history.val_loss == straight.val_loss and history.lr == straight.lr
    assert history.grad_norm == straight.grad_norm
    assert weights_equal(model.state_dict(), straight_model.state_dict())
    assert load_checkpoint(path).step == 40 and load_checkpoint(path).config == {"context": 8}
    state = optimizer.state_dict()["state"]
    assert all((v["exp_avg"] == straight_optimizer.state_dict()["state"][k]["exp_avg"]).all()
               for k, v in state.items())  # fmt: skip


def test_resuming_a_stateless_source_skips_the_batches_already_used(corpus, tmp_path):
    vocab_size, train_tokens, _ = corpus
    source = SequentialWindows(train_tokens[:2_000], CONTEXT, batch_size=256)  # 8 batches

    def run(steps, resume_from=None):
        model, optimizer, _, _ = make_run(corpus, dropout=0.0)
        return train(
            model, optimizer, source, steps, checkpoint=tmp_path / "epochs.safetensors",
            checkpoint_every=7, resume_from=resume_from, progress=False,
        )  # fmt: skip

    straight = run(20)  # two and a half epochs
    run(7)
    assert run(20, resume_from=tmp_path / "epochs.safetensors").train_loss == straight.train_loss


def test_a_crash_while_writing_leaves_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    import lmcore.atomic
    import lmcore.train.checkpoint as checkpoint_module

    model = make_run(corpus)[0]
    path = tmp_path / "run.safetensors"
    save_checkpoint(path, step=1, model=model)

    def crash(*args):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(lmcore.atomic.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, step=2, model=model)
    monkeypatch.undo()

    def write_half(tensors, filename, metadata):
        with open(filename, "wb") as file:
            file.write(b"\x00" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "save_file", write_half)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, step=3, model=model)
    assert load_checkpoint(path, model=model).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.safetensors"]  # no temporary left


def loss_turning_nan_at(bad_call: int):
    """The default loss, made NaN at its ``bad_call``-th call."""
    calls = 0

    def loss_fn(model, x, y):
        nonlocal calls
        calls += 1
        loss = default_loss(model, x, y)
        return loss * math.nan if calls == bad_call else loss

    return loss_fn


def test_a_nan_loss_stops_with_its_step_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    model, optimizer, _, batches = make_run(corpus)
    path = tmp_path / "run.safetensors"
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 25") as caught:
        train(
            model, optimizer, batches, 50, loss_fn=loss_turning_nan_at(25), checkpoint=path,
            checkpoint_every=10, progress=False,
        )  # fmt: skip
    assert caught.value.step == 25 and str(path) in str(caught.value)
    before = model.state_dict()
    saved = load_checkpoint(path, model=model)
    assert saved.step == 20 and all(np.isfinite(v).all() for v in model.state_dict().values())
    assert not weights_equal(before, model.state_dict())  # steps 21-24 are not in the file
    assert [p.name for p in tmp_path.iterdir()] == ["run.safetensors"]


def test_a_checkpoint_of_another_architecture_lists_the_mismatched_keys(corpus, tmp_path):
    vocab_size = corpus[0]
    path = tmp_path / "mlp.safetensors"
    save_checkpoint(path, model=MLPLanguageModel(vocab_size, CONTEXT, 12, 48))
    wider = MLPLanguageModel(vocab_size, CONTEXT, 12, 64)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, model=wider)
    message = str(caught.value)
    assert str(path) in message and "hidden.weight: checkpoint (48, 96), model (64, 96)" in message
    with pytest.raises(CheckpointError, match="missing keys: weight, bias") as caught:
        load_checkpoint(path, model=nn.Linear(3, 2))
    assert "unexpected keys: embedding.weight" in str(caught.value)


def test_missing_corrupt_and_foreign_files_get_clear_errors(corpus, tmp_path):
    from safetensors.numpy import save_file

    model = make_run(corpus)[0]
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*absent.safetensors"):
        load_checkpoint(tmp_path / "absent.safetensors", model=model)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(garbage, model=model)

    good = save_checkpoint(tmp_path / "good.safetensors", model=model)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated, model=model)

    foreign = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, foreign)
    with pytest.raises(CheckpointError, match="not an lmcore checkpoint"):
        load_checkpoint(foreign, model=model)

    with pytest.raises(CheckpointError, match="holds no 'optimizer' state"):
        load_checkpoint(good, optimizer=optim.SGD(model.parameters()))


def test_memory_stays_flat_over_many_steps(corpus, tmp_path):
    model, optimizer, scheduler, batches = make_run(corpus, total_steps=200)
    live_tensors = {}

    def counting_loss(model, x, y):
        step = len(live_tensors.setdefault("calls", [])) + 1
        live_tensors["calls"].append(step)
        if step in (50, 200):
            gc.collect()
            live_tensors[step] = sum(isinstance(o, Tensor) for o in gc.get_objects())
        return default_loss(model, x, y)

    train(
        model, optimizer, batches, 200, loss_fn=counting_loss, scheduler=scheduler,
        val_batches=val_set(corpus, 2_000), eval_every=25, checkpoint=tmp_path / "m.safetensors",
        checkpoint_every=50, progress=False,
    )  # fmt: skip
    assert live_tensors[200] == live_tensors[50], live_tensors


def test_a_finite_iterator_that_runs_out_is_reported(corpus):
    model, optimizer, _, batches = make_run(corpus)
    few = iter([next(batches) for _ in range(3)])
    with pytest.raises(ValueError, match="batches ran out"):
        train(model, optimizer, few, 5, progress=False)
    with pytest.raises(ValueError, match="val_batches or eval_fn"):
        train(model, optimizer, batches, 5, val_batches=[], eval_fn=lambda: 0.0)


# ---------------------------------------------------------------------------
# Truncated backpropagation through time: carry_state=True


def make_recurrent_run(corpus, seed=0, cell="lstm"):
    """A small recurrent model, its optimizer, 6 contiguous training batches per pass and
    a contiguous validation set."""
    vocab_size, train_tokens, val_tokens = corpus
    manual_seed(seed)
    model = RNNLanguageModel(vocab_size, embed_dim=8, hidden_size=16, cell=cell)
    optimizer = optim.AdamW(model.parameters(), lr=3e-3)
    batches = ContiguousBatches(train_tokens[:385], block_size=16, batch_size=4)  # 6 batches
    val = ContiguousBatches(val_tokens[:1_001], block_size=50, batch_size=4)  # 5 batches
    return model, optimizer, batches, val


def recording(calls):
    """:func:`recurrent_loss` that records whether the model was training, the state it
    was given (None or a copy of its arrays, with whether it needed gradients) and the
    state it returned."""

    def loss_fn(model, x, y, state):
        loss, new_state = recurrent_loss(model, x, y, state)
        given = None if state is None else [(s.data.copy(), s.requires_grad) for s in state]
        calls.append((model.training, given, [s.data.copy() for s in new_state]))
        return loss, new_state

    return loss_fn


def test_carry_state_passes_each_batch_the_detached_state_of_the_one_before(corpus):
    model, optimizer, batches, _ = make_recurrent_run(corpus)
    assert len(batches) == 6
    calls = []
    history = train(
        model, optimizer, batches, 14, loss_fn=recording(calls), carry_state=True,
        progress=False,
    )  # fmt: skip
    assert len(calls) == 14 and all(training for training, _, _ in calls)
    for step, (_, given, _) in enumerate(calls):
        if step % 6 == 0:  # the first batch of each pass over the data starts from zeros
            assert given is None, step
            continue
        previous_final = calls[step - 1][2]
        assert all((a == b).all() for (a, _), b in zip(given, previous_final))
        assert not any(needs_grad for _, needs_grad in given)  # detached: TBPTT
    assert all(np.isfinite(history.train_loss)) and all(g > 0 for g in history.grad_norm)


def test_evaluation_carries_its_own_state_and_leaves_the_training_state_alone(corpus):
    model, optimizer, batches, val = make_recurrent_run(corpus)
    calls = []
    history = train(
        model, optimizer, batches, 5, loss_fn=recording(calls), carry_state=True,
        val_batches=val, eval_every=2, progress=False,
    )  # fmt: skip
    training = [call for call in calls if call[0]]
    evaluating = [call for call in calls if not call[0]]
    assert len(training) == 5 and len(evaluating) == 3 * len(val)  # at steps 2, 4 and 5
    for k in range(0, len(evaluating), len(val)):  # each evaluation starts from zeros...
        assert evaluating[k][1] is None
        for j in range(k + 1, k + len(val)):  # ...and carries its state through the stream
            given, previous_final = evaluating[j][1], evaluating[j - 1][2]
            assert all((a == b).all() for (a, _), b in zip(given, previous_final))
    for step in (2, 4):  # the training batch after an evaluation continues the training state
        given, previous_final = training[step][1], training[step - 1][2]
        assert all((a == b).all() for (a, _), b in zip(given, previous_final))
    assert history.val_loss[-1] == pytest.approx(evaluate(model, val, carry_state=True))


def test_state_carrier_detaches_resets_and_round_trips_through_a_checkpoint(corpus, tmp_path):
    model, _, batches, _ = make_recurrent_run(corpus, cell="gru")
    carrier = StateCarrier()
    x, y = next(iter(batches))
    carrier(model, x, y)
    assert isinstance(carrier.state, Tensor) and not carrier.state.requires_grad
    path = save_checkpoint(tmp_path / "carrier.safetensors", state=carrier)
    restored = StateCarrier()
    load_checkpoint(path, state=restored)
    assert (restored.state.data == carrier.state.data).all()
    carrier.reset()
    assert carrier.state is None


def run_recurrent_with_checkpoints(corpus, steps, path, resume_from=None, seed=0):
    model, optimizer, batches, val = make_recurrent_run(corpus, seed=seed)
    history = train(
        model, optimizer, batches, steps, carry_state=True, clip=1.0, val_batches=val,
        eval_every=4, checkpoint=path, checkpoint_every=5, resume_from=resume_from,
        progress=False,
    )  # fmt: skip
    return model, history


def test_resuming_a_truncated_bptt_run_reproduces_it_exactly(corpus, tmp_path):
    straight_model, straight = run_recurrent_with_checkpoints(
        corpus, 16, tmp_path / "straight.safetensors"
    )
    path = tmp_path / "interrupted.safetensors"
    run_recurrent_with_checkpoints(corpus, 8, path)  # stops inside the second pass
    assert load_checkpoint(path).state["recurrent_state"]["state"] is not None
    model, history = run_recurrent_with_checkpoints(corpus, 16, path, resume_from=path, seed=3)
    assert history.train_loss == straight.train_loss  # bit for bit, the carried state too
    assert history.val_loss == straight.val_loss
    assert weights_equal(model.state_dict(), straight_model.state_dict())


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_training_checkpointing_and_resuming_on_the_gpu(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cuda")
    path = tmp_path / "gpu.safetensors"
    model, _, straight = run_with_checkpoints(corpus, 40, tmp_path / "straight.safetensors")
    assert backend.device_of(model.hidden.weight.data) == "cuda"
    run_with_checkpoints(corpus, 20, path)
    model, _, resumed = run_with_checkpoints(corpus, 40, path, resume_from=path, seed=7)
    assert backend.device_of(model.hidden.weight.data) == "cuda"
    # GPU sums are not bit-reproducible, and CuPy's dropout generator is not saved:
    # the resumed run follows the same path closely, not exactly.
    assert resumed.train_loss[:20] == pytest.approx(straight.train_loss[:20], rel=1e-4)
    assert np.mean(resumed.train_loss[20:]) == pytest.approx(
        np.mean(straight.train_loss[20:]), abs=0.05
    )
    assert resumed.val_loss[-1] < resumed.val_loss[0]


def test_logging_every_k_steps_keeps_the_same_history(corpus):
    """Reading losses back every 8 steps instead of every step changes no number."""
    runs = []
    for log_every in (1, 8):
        model, optimizer, scheduler, batches = make_run(corpus, total_steps=30)
        history = train(
            model, optimizer, batches, 30, scheduler=scheduler, clip=1.0, log_every=log_every,
            val_batches=val_set(corpus), eval_every=10, progress=False,
        )  # fmt: skip
        runs.append((history, model.state_dict()))
    (first, weights), (second, weights_k) = runs
    assert first.step == second.step == list(range(1, 31))
    assert first.train_loss == second.train_loss and first.grad_norm == second.grad_norm
    assert first.val_loss == second.val_loss and weights_equal(weights, weights_k)


def test_a_nan_loss_is_named_by_its_step_when_logging_every_k_steps(corpus):
    model, optimizer, _, batches = make_run(corpus)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 13"):
        train(
            model, optimizer, batches, 40, loss_fn=loss_turning_nan_at(13), log_every=10,
            progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="log_every must be a positive integer"):
        train(model, optimizer, batches, 40, log_every=0, progress=False)
