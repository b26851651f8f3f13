"""Recurrent layers: fused ops, RNN/LSTM/GRU modules and cells, the recurrent language model."""

from pathlib import Path

import numpy as np
import pytest

from lmcore import optim
from lmcore.autograd import Tensor
from lmcore.data.batches import ContiguousBatches
from lmcore.functional.recurrence import gru_layer, lstm_layer, rnn_layer
from lmcore.gradcheck import gradcheck
from lmcore.models.rnn import RNNLanguageModel, detach_state
from lmcore.nn.module import functional_call
from lmcore.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from lmcore.rng import manual_seed

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


def rand(*shape, seed=0, grad=True):
    data = np.random.default_rng(seed).standard_normal(shape)
    return Tensor(data, requires_grad=grad)


# ---------------------------------------------------------------------------
# Fused ops, float64 gradient checks


@pytest.mark.parametrize("mode", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_layer_gradients(mode, bias):
    T, B, D, H = 4, 3, 3, 2
    G = GATES[mode.split("_")[0]]
    x, h0, c0 = rand(T, B, D, seed=1), rand(B, H, seed=2), rand(B, H, seed=3)
    weights = [rand(G * H, D, seed=4), rand(G * H, H, seed=5)]
    if bias:
        weights += [rand(G * H, seed=6), rand(G * H, seed=7)]
    if mode == "lstm":
        assert gradcheck(lstm_layer, x, h0, c0, *weights)
        # the final cell state alone also carries a gradient back
        assert gradcheck(lambda *a: lstm_layer(*a)[2], x, h0, c0, *weights)
    elif mode == "gru":
        assert gradcheck(gru_layer, x, h0, *weights)
        assert gradcheck(lambda *a: gru_layer(*a)[1], x, h0, *weights)
    else:
        nonlinearity = mode.split("_")[1]
        assert gradcheck(lambda *a: rnn_layer(*a, nonlinearity=nonlinearity), x, h0, *weights)


# ---------------------------------------------------------------------------
# Modules: gradient checks of every weight and state, shapes


def module_gradcheck(module, x, hx):
    """Gradient check of ``module(x, hx)`` w.r.t. the input, initial states and all weights."""
    names = [name for name, _ in module.named_parameters()]
    params = [Tensor(p.data, requires_grad=True) for p in module.parameters()]
    states = [] if hx is None else list(hx) if isinstance(hx, tuple) else [hx]

    def run(x, *rest):
        given, weights = rest[: len(states)], rest[len(states) :]
        state = None if not given else tuple(given) if len(given) == 2 else given[0]
        output, final = functional_call(module, dict(zip(names, weights)), (x, state))
        return (output, *final) if isinstance(final, tuple) else (output, final)

    return gradcheck(run, x, *states, *params)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_module_gradients(kind, batch_first, with_state):
    manual_seed(0)
    T, B, D, H, L = 3, 2, 3, 2, 2
    module = LAYERS[kind](D, H, num_layers=L, batch_first=batch_first)
    x = rand(*((B, T, D) if batch_first else (T, B, D)), seed=1)
    hx = None
    if with_state:
        hx = (rand(L, B, H, seed=2), rand(L, B, H, seed=3)) if kind == "lstm" else rand(L, B, H)
    assert module_gradcheck(module, x, hx)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_gradients(kind):
    manual_seed(0)
    cell = CELLS[kind](3, 2)
    x, h, c = rand(4, 3, seed=1), rand(4, 2, seed=2), rand(4, 2, seed=3)
    names = [name for name, _ in cell.named_parameters()]
    params = [Tensor(p.data, requires_grad=True) for p in cell.parameters()]
    if kind == "lstm":
        run = lambda x, h, c, *w: functional_call(cell, dict(zip(names, w)), (x, (h, c)))
        assert gradcheck(run, x, h, c, *params)
    else:
        run = lambda x, h, *w: functional_call(cell, dict(zip(names, w)), (x, h))
        assert gradcheck(run, x, h, *params)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_shapes_names_and_init(kind):
    D, H, L, B, T = 5, 7, 3, 2, 4
    layer = LAYERS[kind](D, H, num_layers=L, batch_first=True)
    G = GATES[kind]
    shapes = {name: p.shape for name, p in layer.named_parameters()}
    assert list(shapes)[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert shapes["weight_ih_l0"] == (G * H, D) and shapes["weight_ih_l2"] == (G * H, H)
    assert shapes["weight_hh_l1"] == (G * H, H) and shapes["bias_hh_l2"] == (G * H,)
    bound = 1 / np.sqrt(H)
    assert all(np.abs(p.data).max() <= bound for p in layer.parameters())
    output, final = layer(np.ones((B, T, D), np.float32))
    h_n = final[0] if kind == "lstm" else final
    assert output.shape == (B, T, H) and h_n.shape == (L, B, H)
    assert output.dtype == np.float32
    np.testing.assert_allclose(output.data[:, -1], h_n.data[-1], rtol=1e-6)
    unbatched, _ = layer(np.ones((T, D), np.float32))  # one sequence, no batch axis
    assert unbatched.shape == (T, H)
    np.testing.assert_allclose(unbatched.data, output.data[0], rtol=1e-5, atol=1e-6)
    assert len(list(LAYERS[kind](D, H, bias=False).parameters())) == 2


def test_dropout_between_layers_only_in_training():
    manual_seed(0)
    lstm = LSTM(3, 4, num_layers=2, dropout=0.5)
    x = np.ones((5, 2, 3), np.float32)
    train_a, train_b = lstm(x)[0].data, lstm(x)[0].data
    lstm.eval()
    eval_a, eval_b = lstm(x)[0].data, lstm(x)[0].data
    assert not np.allclose(train_a, train_b)
    np.testing.assert_array_equal(eval_a, eval_b)


def test_cell_matches_one_step_of_the_layer():
    manual_seed(0)
    layer, cell = GRU(3, 4), GRUCell(3, 4)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x, h = np.ones((1, 2, 3), np.float32), np.full((1, 2, 4), 0.5, np.float32)
    np.testing.assert_allclose(cell(x[0], h[0]).data, layer(x, h)[1].data[0], rtol=1e-6)


# ---------------------------------------------------------------------------
# PyTorch layout and values (unidirectional)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_same_outputs_and_gradients_as_torch(kind, bidirectional):
    torch = pytest.importorskip("torch")
    name = kind.split("_")[0]
    extra = {"nonlinearity": kind.split("_")[1]} if name == "rnn" else {}
    extra["bidirectional"] = bidirectional
    torch.manual_seed(0)
    reference = getattr(torch.nn, name.upper())(3, 5, num_layers=2, batch_first=True, **extra)
    reference = reference.double()
    layer = LAYERS[name](3, 5, num_layers=2, batch_first=True, **extra).to("float64")
    layer.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 3))  # (B, T, D)
    count = 4 if bidirectional else 2  # num_layers * directions
    states = [rng.standard_normal((count, 4, 5)) for _ in range(2 if name == "lstm" else 1)]
    hx = tuple(states) if name == "lstm" else states[0]
    torch_hx = tuple(map(torch.tensor, states)) if name == "lstm" else torch.tensor(states[0])
    expected, expected_final = reference(torch.tensor(x), torch_hx)
    output, final = layer(x, hx)
    np.testing.assert_allclose(output.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    if name == "lstm":
        for mine, theirs in zip(final, expected_final):
            np.testing.assert_allclose(mine.data, theirs.detach().numpy(), rtol=1e-10)
    (output.sum() + (output * output).sum()).backward()
    (expected.sum() + (expected * expected).sum()).backward()
    for (key, param), (torch_key, torch_param) in zip(
        layer.named_parameters(), reference.named_parameters()
    ):
        assert key == torch_key
        np.testing.assert_allclose(param.grad, torch_param.grad.numpy(), rtol=1e-9, atol=1e-12)


SNAPSHOT = Path(__file__).parent / "data" / "torch_recurrent.npz"


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_same_outputs_and_gradients_as_the_torch_snapshot(kind, directions):
    """The numbers of tests/data/make_torch_recurrent_snapshot.py, without torch."""
    snapshot = np.load(SNAPSHOT)
    prefix = f"{kind}_{directions}/"
    name = kind.split("_")[0]
    extra = {"nonlinearity": kind.split("_")[1]} if name == "rnn" else {}
    layer = LAYERS[name](
        3, 5, num_layers=2, batch_first=True, bidirectional=directions == 2, **extra
    ).to("float64")
    keys = [k for k, _ in layer.named_parameters()]
    layer.load_state_dict({k: snapshot[prefix + k] for k in keys})
    hx = snapshot[prefix + "h0"]
    if name == "lstm":
        hx = (hx, snapshot[prefix + "c0"])
    output, final = layer(snapshot[prefix + "x"], hx)
    np.testing.assert_allclose(output.data, snapshot[prefix + "output"], rtol=1e-10, atol=1e-12)
    for value, key in zip(final if name == "lstm" else (final,), ("h_n", "c_n")):
        np.testing.assert_allclose(value.data, snapshot[prefix + key], rtol=1e-10, atol=1e-12)
    (output.sum() + (output * output).sum()).backward()
    for key, param in layer.named_parameters():
        expected = snapshot[prefix + "grad/" + key]
        np.testing.assert_allclose(np.asarray(param.grad), expected, rtol=1e-9, atol=1e-12)


def test_bidirectional_layer_is_a_forward_and_a_backward_pass_side_by_side():
    manual_seed(0)
    both = LSTM(3, 4, bidirectional=True)
    forward, backward = LSTM(3, 4), LSTM(3, 4)
    state = both.state_dict()
    forward.load_state_dict({k: v for k, v in state.items() if not k.endswith("_reverse")})
    backward.load_state_dict(
        {k.removesuffix("_reverse"): v for k, v in state.items() if k.endswith("_reverse")}
    )
    x = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)  # (T, B, I)
    output, (h_n, c_n) = both(x)
    ahead, (h_f, _) = forward(x)
    behind, (h_b, _) = backward(x[::-1].copy())
    assert output.shape == (7, 2, 8) and h_n.shape == (2, 2, 4) and c_n.shape == (2, 2, 4)
    np.testing.assert_allclose(output.data[..., :4], ahead.data, rtol=1e-6)
    np.testing.assert_allclose(output.data[..., 4:], behind.data[::-1], rtol=1e-6)
    np.testing.assert_allclose(h_n.data, np.concatenate([h_f.data, h_b.data]), rtol=1e-6)
    assert "bidirectional=True" in repr(both)


def test_bidirectional_output_at_t_depends_on_later_inputs():
    manual_seed(0)
    gru = GRU(2, 3, bidirectional=True, num_layers=2)
    x = np.random.default_rng(0).standard_normal((6, 1, 2)).astype(np.float32)
    changed = x.copy()
    changed[-1] += 1.0  # only the last step differs
    a, b = gru(x)[0].data, gru(changed)[0].data
    assert not np.allclose(a[0], b[0])  # the first output sees the last input: no LM


def test_bidirectional_gradcheck():
    x = Tensor(np.random.default_rng(0).standard_normal((4, 2, 3)), requires_grad=True)
    manual_seed(0)
    layer = RNN(3, 2, bidirectional=True).to("float64")
    assert gradcheck(
        lambda x, w: (layer(x)[0] * w).sum(), x, Tensor(np.ones(4), requires_grad=True)
    )


# ---------------------------------------------------------------------------
# The language model and truncated backpropagation through time


def test_truncated_bptt_carries_detached_state():
    manual_seed(0)
    model = RNNLanguageModel(vocab_size=11, embed_dim=6, hidden_size=8, num_layers=2)
    tokens = np.random.default_rng(0).integers(0, 11, 200)
    (x0, y0), (x1, y1) = list(ContiguousBatches(tokens, block_size=5, batch_size=3))[:2]
    _, loss0, state0 = model(x0, y0)
    carried = detach_state(state0)
    assert all(not s.requires_grad for s in carried)
    assert all(np.shares_memory(a.data, b.data) for a, b in zip(carried, state0))
    logits1, loss1, _ = model(x1, y1, carried)
    # batch 1 continues batch 0 row by row: carrying the state equals reading both at once
    both, _ = model(np.concatenate([x0, x1], axis=1))
    np.testing.assert_allclose(logits1.data, both.data[:, 5:], rtol=1e-4, atol=1e-5)
    # backward of batch 1 stops at the carried state: it never visits batch 0's graph
    # (a visited graph is freed), so batch 0 can still be backpropagated afterwards
    loss1.backward()
    assert state0[0].creator.inputs is not None
    loss0.backward()


def test_lstm_language_model_learns_a_repeated_sequence():
    manual_seed(0)
    pattern = [0, 1, 2, 3, 4, 2, 5, 1, 6]
    tokens = np.array(pattern * 40)
    model = RNNLanguageModel(vocab_size=7, embed_dim=8, hidden_size=32, cell="lstm")
    optimizer = optim.Adam(model.parameters(), lr=0.03)
    losses, state = [], None
    for _ in range(6):
        for x, y in ContiguousBatches(tokens, block_size=12, batch_size=4):
            _, loss, state = model(x, y, detach_state(state))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert losses[0] > 1.5 and losses[-1] < 0.1
    continued = model.generate(np.array([pattern[:3]]), max_new_tokens=12, temperature=0)
    assert continued[0].tolist() == (pattern * 2)[:15]


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_language_model_shapes_for_every_cell(cell):
    model = RNNLanguageModel(vocab_size=9, embed_dim=4, hidden_size=6, num_layers=2, cell=cell)
    logits, loss, state = model(np.zeros((3, 5), np.int64), np.ones((3, 5), np.int64))
    assert logits.shape == (3, 5, 9) and state.shape == (2, 3, 6) and loss.shape == ()
    assert model.generate(np.zeros((2, 1), np.int64), 4, top_k=3, seed=0).shape == (2, 5)


# ---------------------------------------------------------------------------
# Errors


def test_errors_name_the_layer_and_the_shapes():
    lstm = LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM\(3, 4, num_layers=2\).*3 features.*\(5, 2, 7\)"):
        lstm(np.ones((5, 2, 7), np.float32))
    with pytest.raises(ValueError, match=r"got \(1, 5, 2, 3\)"):
        lstm(np.ones((1, 5, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"h0 of shape \(2, 2, 4\).*got \(1, 2, 4\)"):
        h = np.zeros((1, 2, 4), np.float32)
        lstm(np.ones((5, 2, 3), np.float32), (h, h))
    with pytest.raises(TypeError, match=r"pair \(h0, c0\)"):
        lstm(np.ones((5, 2, 3), np.float32), np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match="batch-second"):
        GRU(3, 4, batch_first=True)(np.ones((2, 5, 3), np.float32), np.zeros((1, 5, 4)))
    with pytest.raises(ValueError, match="T must be at least 1"):
        RNN(3, 4)(np.ones((0, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"GRUCell\(3, 4\).*\(batch, 3\)"):
        GRUCell(3, 4)(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="cell must be one of"):
        RNNLanguageModel(5, 4, 4, cell="transformer")
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        RNNLanguageModel(5, 4, 4)(np.zeros(6, np.int64))


# ---------------------------------------------------------------------------
# An embedding followed by the first projection: one lookup in their product


def _ids(shape, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, shape)


@pytest.mark.parametrize("bias", [True, False])
def test_embedding_linear_takes_the_table_path_and_passes_gradcheck(bias):
    from lmcore import functional as F

    ids = _ids((30, 4), 5)  # N = 120 positions of a vocabulary of 5: the table is cheaper
    table, weight = rand(5, 3, seed=1), rand(6, 3, seed=2)
    args = (table, weight) + ((rand(6, seed=3),) if bias else ())
    assert type(F.embedding_linear(ids, *args).creator).__name__ == "EmbeddingLinear"
    assert gradcheck(lambda *a: F.embedding_linear(ids, *a), *args)


def test_embedding_linear_equals_the_two_operations_in_values_and_gradients():
    from lmcore import functional as F

    ids = _ids((64, 8), 7, seed=4)
    results = []
    for fused in (True, False):
        table, weight, bias = rand(7, 5, seed=1), rand(12, 5, seed=2), rand(12, seed=3)
        if fused:
            out = F.embedding_linear(ids, table, weight, bias)
        else:
            out = F.linear(F.embedding(ids, table), weight, bias)
        (out * rand(*out.shape, seed=9, grad=False)).sum().backward()
        results.append((out.data, table.grad.data, weight.grad.data, bias.grad.data))
    for fused, plain in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-12, atol=1e-12)


def test_embedding_linear_of_a_large_vocabulary_runs_the_two_operations():
    from lmcore import functional as F

    ids = _ids((3,), 1000)
    table, weight = rand(1000, 4, seed=1), rand(2, 4, seed=2)
    out = F.embedding_linear(ids, table, weight)
    assert type(out.creator).__name__ == "Linear"
    np.testing.assert_allclose(out.data, table.data[ids] @ weight.data.T)
    with pytest.raises(TypeError, match="integers"):
        F.embedding_linear(np.ones(3), table, weight)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_forward_projected_equals_forward(kind):
    from lmcore import functional as F

    layer = LAYERS[kind](3, 4, num_layers=2, dtype=np.float64)
    x = rand(5, 2, 3, seed=1)
    gx = F.linear(x, layer.weight_ih_l0, layer.bias_ih_l0)
    out, final = layer.forward_projected(gx)
    expected, expected_final = layer(x)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-12)
    for got, want in zip(
        final if kind == "lstm" else (final,),
        expected_final if kind == "lstm" else (expected_final,),
    ):
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12)
    with pytest.raises(
        ValueError, match=r"\(time, batch, 16\)|\(time, batch, 4\)|\(time, batch, 12\)"
    ):
        layer.forward_projected(x)
    with pytest.raises(ValueError, match="bidirectional"):
        LAYERS[kind](3, 4, bidirectional=True).forward_projected(
            np.zeros((5, 2, 4 * GATES[kind]), np.float32)
        )


def test_language_model_gradients_equal_the_embedding_then_the_stack():
    manual_seed(0)
    model = RNNLanguageModel(11, 6, 8, num_layers=2, cell="lstm", dtype=np.float64)
    idx, targets = _ids((3, 40), 11, seed=1), _ids((3, 40), 11, seed=2)
    _, loss, _ = model(idx, targets)  # B*T = 120 ids of 11 tokens: the product table
    loss.backward()
    fused = {name: p.grad.data.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    from lmcore import functional as F

    x, _ = model.rnn(model.embedding(idx.T))
    logits = model.head(x)  # (T, B, V)
    F.cross_entropy(logits, targets.T).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(fused[name], p.grad.data, rtol=1e-10, atol=1e-12, err_msg=name)
