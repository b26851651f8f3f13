"""Token batching: shapes, values, seeding, exact coverage and errors."""

import numpy as np
import pytest

from lmcore import backend
from lmcore.data.batches import (
    ContiguousBatches,
    RandomBlocks,
    RandomWindows,
    SequentialBlocks,
    SequentialWindows,
    sample_blocks,
    sample_windows,
    windows,
)

TOKENS = np.arange(100) * 3  # distinct values: a token's value tells its position


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


def test_windows_pairs_every_window_with_its_next_token():
    x, y = windows(TOKENS, context=4)
    assert x.shape == (96, 4) and y.shape == (96,) and x.dtype == np.int64
    assert x[0].tolist() == [0, 3, 6, 9] and y[0] == 12
    assert (x[:, 1:] == x[:, :-1] + 3).all() and (y == x[:, -1] + 3).all()
    assert windows([1, 2, 3], context=2)[1].tolist() == [3]


def test_sample_windows_and_blocks_are_slices_of_the_stream():
    generator = np.random.default_rng(0)
    x, y = sample_windows(TOKENS, 5, 32, generator)
    assert x.shape == (32, 5) and y.shape == (32,)
    assert ((x[:, 1:] - x[:, :-1]) == 3).all() and (y == x[:, -1] + 3).all()
    x, y = sample_blocks(TOKENS, 7, 16, generator)
    assert x.shape == y.shape == (16, 7)
    assert (y == x + 3).all()  # targets are the inputs shifted by one token


def test_random_sampling_reaches_the_last_target():
    x, y = sample_blocks(np.arange(10), 8, 200, np.random.default_rng(1))
    assert set(x[:, 0].tolist()) == {0, 1} and y.max() == 9


def test_random_sources_repeat_from_the_same_seed_and_resume_from_state():
    a, b = RandomBlocks(TOKENS, 6, 4, seed=3), RandomBlocks(TOKENS, 6, 4, seed=3)
    for _ in range(3):
        assert all((p == q).all() for p, q in zip(next(a), next(b)))
    other = RandomBlocks(TOKENS, 6, 4, seed=4)
    assert not (next(other)[0] == next(RandomBlocks(TOKENS, 6, 4, seed=3))[0]).all()

    source = RandomWindows(TOKENS, 3, 8, seed=0)
    next(source)
    state = source.state_dict()
    expected = [next(source) for _ in range(3)]
    resumed = RandomWindows(TOKENS, 3, 8, seed=123)
    resumed.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(expected, (next(resumed) for _ in range(3))):
        assert (x1 == x2).all() and (y1 == y2).all()


def test_sequential_windows_cover_every_window_once_in_order():
    val = SequentialWindows(TOKENS, context=4, batch_size=30)
    batches = list(val)
    assert len(val) == len(batches) == 4 and [y.shape for _, y in batches][-1] == (6,)
    x = np.concatenate([x for x, _ in batches])
    y = np.concatenate([y for _, y in batches])
    expected_x, expected_y = windows(TOKENS, 4)
    assert (x == expected_x).all() and (y == expected_y).all()
    assert len(list(val)) == 4  # a second pass starts again


def test_sequential_blocks_predict_every_token_exactly_once():
    val = SequentialBlocks(TOKENS, block_size=8, batch_size=5)
    batches = list(val)
    assert len(val) == len(batches) == 4  # 12 full blocks in 3 batches, then 3 tokens
    assert [x.shape for x, _ in batches] == [(5, 8), (5, 8), (2, 8), (1, 3)]
    targets = np.concatenate([y.ravel() for _, y in batches])
    assert (targets == TOKENS[1:]).all()
    assert all((y == x + 3).all() for x, y in batches)


def test_contiguous_batches_continue_each_row_across_batches():
    stream = ContiguousBatches(TOKENS, block_size=10, batch_size=3)
    batches = list(stream)
    assert len(stream) == len(batches) == 4  # 33 targets per row: 10, 10, 10, 3
    assert [x.shape for x, _ in batches] == [(3, 10)] * 3 + [(3, 3)]
    rows = np.concatenate([x for x, _ in batches], axis=1)  # (3, 33)
    assert (rows == TOKENS[:99].reshape(3, 33)).all()
    assert all((y == x + 3).all() for x, y in batches)
    everything = ContiguousBatches(TOKENS, block_size=7, batch_size=1)
    assert (np.concatenate([y.ravel() for _, y in everything]) == TOKENS[1:]).all()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: windows(np.arange(4), context=4), "context=4 needs at least 5"),
        (lambda: RandomBlocks(np.arange(8), 8, 2, seed=0), "block_size=8"),
        (lambda: SequentialWindows([], 3, 2), "has 0 tokens"),
        (lambda: ContiguousBatches(np.arange(3), 2, batch_size=3), "batch_size=3"),
        (lambda: windows(np.arange(10), context=0), "context must be a positive integer"),
        (lambda: RandomWindows(np.arange(10), 2, batch_size=0), "batch_size must be"),
        (lambda: windows(np.ones((4, 4), int), 2), "1-D sequence of integer ids"),
        (lambda: windows(np.linspace(0, 1, 10), 2), "encode the text first"),
    ],
)
def test_bad_inputs_say_what_is_wrong(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_batches_are_on_the_active_device_and_the_same_on_every_device(monkeypatch):
    cpu_batch = next(RandomBlocks(TOKENS, 6, 4, seed=5))
    monkeypatch.setenv("LMCORE_DEVICE", "cuda")
    cp = backend.xp("cuda")
    gpu_batch = next(RandomBlocks(TOKENS, 6, 4, seed=5))
    assert all(isinstance(a, cp.ndarray) for a in gpu_batch)
    assert all((a.get() == b).all() for a, b in zip(gpu_batch, cpu_batch))
    for source in (SequentialWindows(TOKENS, 4, 32), SequentialBlocks(TOKENS, 8, 5)):
        assert all(isinstance(y, cp.ndarray) for _, y in source)
    rows = np.concatenate([x.get() for x, _ in ContiguousBatches(TOKENS, 10, 3)], axis=1)
    assert (rows == TOKENS[:99].reshape(3, 33)).all()
