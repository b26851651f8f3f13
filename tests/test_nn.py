"""Modules and layers: registration, names, gradients, saving and loading, devices, init."""

import math

import numpy as np
import pytest

from lmcore import backend, nn
from lmcore.autograd import Tensor
from lmcore.gradcheck import gradcheck
from lmcore.nn import init
from lmcore.rng import manual_seed


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    """Layers are made on the CPU here, also on a machine with a GPU (tests that use the GPU
    move models there themselves)."""
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


def rand(*shape, seed=0, dtype=np.float64, grad=False):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return Tensor(data, requires_grad=grad)


class Block(nn.Module):
    """A small model with nested modules, a ModuleList and a buffer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 3, bias=False)
        self.register_buffer("scale", np.full(4, 2.0, np.float32))

    def forward(self, ids):  # (B, T) -> (B, T, 3)
        x = self.embed(ids) * self.scale
        for layer in self.layers:
            x = layer(x).tanh()
        return self.head(self.norm(x))


def check_module_gradients(module, *inputs):
    """gradcheck of module's forward with respect to its inputs and all its parameters."""
    names = [name for name, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]
    count = len(inputs)

    def forward(*tensors):
        return nn.functional_call(module, dict(zip(names, tensors[count:])), tuple(tensors[:count]))

    return gradcheck(forward, *inputs, *params)


# -- layers: shapes, gradients, errors ------------------------------------------------


def test_linear_shapes_names_and_default_init():
    manual_seed(0)
    layer = nn.Linear(400, 300)
    assert layer.weight.shape == (300, 400) and layer.bias.shape == (300,)
    assert layer.weight.dtype == np.float32
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    bound = 1 / math.sqrt(400)  # kaiming_uniform a=sqrt(5) gives U(-1/sqrt(in), 1/sqrt(in))
    assert np.abs(layer.weight.data).max() <= bound
    assert layer.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert np.abs(layer.bias.data).max() <= bound
    assert layer(rand(2, 7, 400, dtype=np.float32)).shape == (2, 7, 300)
    no_bias = nn.Linear(4, 2, bias=False)
    assert no_bias.bias is None and list(no_bias.state_dict()) == ["weight"]


def test_layers_gradcheck_inputs_and_parameters():
    manual_seed(1)
    assert check_module_gradients(nn.Linear(4, 3).to("float64"), rand(2, 3, 4, grad=True))
    assert check_module_gradients(nn.Linear(4, 3, bias=False).to("float64"), rand(5, 4, grad=True))
    assert check_module_gradients(nn.LayerNorm(6).to("float64"), rand(3, 6, grad=True))
    assert check_module_gradients(nn.LayerNorm((2, 3)).to("float64"), rand(4, 2, 3, grad=True))
    ids = np.array([[0, 3, 3], [4, 1, 0]])  # a repeated id adds its gradients
    assert check_module_gradients(nn.Embedding(5, 3).to("float64"), ids)


def test_sequential_gradcheck():
    manual_seed(2)
    model = nn.Sequential(
        nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 5), nn.GELU(), nn.LayerNorm(5), nn.Linear(5, 2)
    ).to("float64")
    assert check_module_gradients(model, rand(4, 3, grad=True))


def test_activations_match_functional():
    x = rand(3, 4)
    np.testing.assert_array_equal(nn.ReLU()(x).numpy(), np.maximum(x.numpy(), 0))
    np.testing.assert_allclose(nn.Tanh()(x).numpy(), np.tanh(x.numpy()))
    assert nn.GELU()(x).shape == (3, 4)
    with pytest.raises(ValueError, match="tanh"):  # "none" (exact, erf) and "tanh" only
        nn.GELU(approximate="exact")


def test_wrong_shapes_name_the_layer_and_both_shapes():
    with pytest.raises(ValueError, match=r"Linear\(in_features=4.*\(\.\.\., 4\).*\(2, 5\)"):
        nn.Linear(4, 3)(rand(2, 5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"LayerNorm\(\(8,\).*\(\.\.\., 8\).*\(2, 6\)"):
        nn.LayerNorm(8)(rand(2, 6, dtype=np.float32))


def test_embedding_init_and_ids_out_of_range():
    manual_seed(3)
    table = nn.Embedding(1000, 64)
    assert table.weight.data.mean() == pytest.approx(0, abs=0.01)
    assert table.weight.data.std() == pytest.approx(1, rel=0.01)
    assert table(np.array([[1, 2], [3, 999]])).shape == (2, 2, 64)
    for bad in (1000, -1):
        with pytest.raises(IndexError, match=rf"Embedding\(1000, 64\).*\[{bad}\]"):
            table(np.array([0, bad]))
    with pytest.raises(TypeError, match="integer ids"):
        table(np.array([0.5]))


def test_dropout_follows_train_and_eval():
    manual_seed(4)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    x = rand(64, 8, dtype=np.float32)
    y = model(x).numpy()
    assert 0.3 < (y == 0).mean() < 0.7
    model.eval()
    assert not model.training and not model[1].training
    np.testing.assert_array_equal(model(x).numpy(), model[0](x).numpy())
    assert model.train() is model and model[1].training


# -- registration and traversal -------------------------------------------------------


def test_named_parameters_children_and_modules():
    model = Block()
    assert [n for n, _ in model.named_parameters()] == [
        "embed.weight",
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "layers.1.bias",
        "norm.weight",
        "norm.bias",
        "head.weight",
    ]
    assert [type(m).__name__ for m in model.children()] == [
        "Embedding",
        "ModuleList",
        "LayerNorm",
        "Linear",
    ]
    assert len(list(model.modules())) == 7  # itself, 4 children, 2 Linear in the list
    assert model.num_parameters() == 5 * 4 + 2 * (16 + 4) + 8 + 12
    assert [n for n, _ in model.named_buffers()] == ["scale"]
    assert model(np.array([[0, 1, 2]])).shape == (1, 3, 3)


def test_attribute_assignment_rules():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones(3))
            self.size = 3  # a plain attribute, not a parameter

    model = Model()
    assert [n for n, _ in model.named_parameters()] == ["w"]
    with pytest.raises(TypeError, match="Model.w is a parameter"):
        model.w = np.zeros(3)
    model.w = None
    assert list(model.parameters()) == []
    del model.w
    with pytest.raises(AttributeError):
        _ = model.w

    class Forgetful(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Forgetful()


def test_shared_parameters_counted_once_but_saved_under_each_name():
    model = nn.Sequential(nn.Embedding(6, 4), nn.Linear(4, 6, bias=False))
    model[1].weight = model[0].weight  # tied input and output embeddings, (6, 4) both
    assert [n for n, _ in model.named_parameters()] == ["0.weight"]
    assert model(np.array([2, 5])).shape == (2, 6)
    assert model.num_parameters() == 24
    assert list(model.state_dict()) == ["0.weight", "1.weight"]


def test_sequential_and_module_list_indexing():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(model) == 3 and isinstance(model[-1], nn.Linear)
    assert isinstance(model[:2], nn.Sequential) and len(model[:2]) == 2
    blocks = nn.ModuleList().append(nn.Linear(2, 2)).extend([nn.ReLU(), nn.Tanh()])
    blocks[1] = nn.GELU()
    assert [type(b).__name__ for b in blocks] == ["Linear", "GELU", "Tanh"]
    assert [n for n, _ in blocks.named_parameters()] == ["0.weight", "0.bias"]


def test_zero_grad_requires_grad_and_apply():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model(rand(4, 3, dtype=np.float32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())

    model[0].requires_grad_(False)
    assert model.num_parameters(only_trainable=True) == 3
    visited = []
    model.apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "Linear", "Sequential"]


def test_repr_is_a_tree():
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1), nn.ModuleList([nn.ReLU()]))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): Dropout(p=0.1)\n"
        "  (2): ModuleList(\n"
        "    (0): ReLU()\n"
        "  )\n"
        ")"
    )
    assert repr(nn.Parameter(np.zeros(2))).startswith("Parameter containing:\ntensor(")


# -- saving, loading, devices ---------------------------------------------------------


def test_state_dict_round_trip_gives_identical_outputs():
    manual_seed(5)
    model = Block()
    saved = model.state_dict()
    # PyTorch's order: a module's parameters, then its buffers, then its children's.
    assert list(saved)[:3] == ["scale", "embed.weight", "layers.0.weight"]
    ids = np.array([[0, 1, 4], [2, 3, 3]])
    expected = model(ids).numpy()
    model.head.weight.data += 1.0  # the saved arrays are copies: unaffected
    assert not np.allclose(saved["head.weight"], model.head.weight.data)

    manual_seed(6)
    fresh = Block()
    result = fresh.load_state_dict(saved)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(fresh(ids).numpy(), expected)


def test_load_state_dict_lists_every_problem_and_loads_nothing():
    model = Block()
    before = model.state_dict()
    saved = model.state_dict()
    del saved["norm.bias"]
    saved["layers.2.weight"] = np.zeros((4, 4), np.float32)
    saved["head.weight"] = np.zeros((7, 4), np.float32)
    saved["embed.weight"] = np.zeros((5, 4), np.float32)  # valid, must still not be written
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(saved)
    message = str(error.value)
    assert "into Block" in message
    assert "missing keys: norm.bias" in message
    assert "unexpected keys: layers.2.weight" in message
    assert "head.weight: checkpoint (7, 4), model (3, 4)" in message
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])

    saved["head.weight"] = before["head.weight"]
    result = model.load_state_dict(saved, strict=False)
    assert result.missing_keys == ["norm.bias"] and result.unexpected_keys == ["layers.2.weight"]
    assert not model.embed.weight.data.any()


def test_non_persistent_buffers_are_not_saved():
    model = nn.Linear(2, 2)
    model.register_buffer("mask", np.tril(np.ones((2, 2), bool)), persistent=False)
    assert list(model.state_dict()) == ["weight", "bias"]
    assert model.mask.dtype == bool


def test_to_float64_casts_parameters_gradients_and_float_buffers():
    model = Block()
    model.register_buffer("positions", np.arange(3))
    model(np.array([[1, 2]])).sum().backward()
    assert model.to("float64") is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
    assert model.scale.dtype == np.float64 and model.positions.dtype.kind == "i"
    assert model(np.array([[1, 2]])).dtype == np.float64
    model.to("cpu")  # already there: a no-op
    with pytest.raises(ValueError, match="floating dtype"):
        model.to("int32")
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        model.to("gpu")


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_to_cuda_and_back():
    manual_seed(7)
    model = Block()
    ids = np.array([[0, 1, 4]])
    expected = model(ids).numpy()
    model.to("cuda")
    assert all(p.device == "cuda" for p in model.parameters()) and model.scale.device == "cuda"
    np.testing.assert_allclose(model(ids).numpy(), expected, rtol=1e-5, atol=1e-6)
    cpu = Block()
    cpu.load_state_dict(model.state_dict())  # CuPy arrays into a model on the CPU
    np.testing.assert_allclose(cpu(ids).numpy(), expected, rtol=1e-5, atol=1e-6)
    model.to("cpu")
    assert all(p.device == "cpu" for p in model.parameters())


def test_functional_call_restores_and_names_unknown_keys():
    layer = nn.Linear(2, 1)
    original = layer.weight
    weight = Tensor(np.zeros((1, 2), np.float32))
    out = nn.functional_call(layer, {"weight": weight}, rand(3, 2, dtype=np.float32))
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(layer.bias.data, (3, 1)))
    assert layer.weight is original
    with pytest.raises(KeyError, match="no parameter or buffer named 'wieght'"):
        nn.functional_call(layer, {"wieght": weight}, rand(3, 2, dtype=np.float32))


# -- init -------------------------------------------------------------------------------


def test_init_statistics_on_a_large_matrix():
    manual_seed(8)
    w = Tensor(np.empty((300, 500), np.float32))
    fan_in, fan_out = init.fan_in_and_fan_out(w)
    assert (fan_in, fan_out) == (500, 300)
    init.xavier_uniform_(w)
    assert w.data.var() == pytest.approx(2 / (fan_in + fan_out), rel=0.03)
    assert np.abs(w.data).max() <= math.sqrt(6 / (fan_in + fan_out))
    init.xavier_normal_(w, gain=init.calculate_gain("tanh"))
    assert w.data.std() == pytest.approx(5 / 3 * math.sqrt(2 / 800), rel=0.02)
    init.kaiming_normal_(w, nonlinearity="relu")
    assert w.data.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    assert np.abs(w.data).max() <= math.sqrt(3) * math.sqrt(2 / fan_out)
    assert w.data.std() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    assert w.dtype == np.float32
    conv = Tensor(np.empty((8, 4, 3)))
    assert init.fan_in_and_fan_out(conv) == (12, 24)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(Tensor(np.empty(5)))


def test_init_reproduces_from_seed_and_across_dtypes():
    manual_seed(9)
    a = nn.Linear(5, 4)
    manual_seed(9)
    b = nn.Linear(5, 4, dtype=np.float64)
    np.testing.assert_array_equal(a.weight.data, b.weight.data.astype(np.float32))
    manual_seed(10)
    c = nn.Linear(5, 4)
    assert not np.array_equal(a.weight.data, c.weight.data)
    generator = np.random.default_rng(0)
    x = init.normal_(Tensor(np.empty(3)), generator=generator)
    y = init.normal_(Tensor(np.empty(3)), generator=np.random.default_rng(0))
    np.testing.assert_array_equal(x.data, y.data)
    assert init.zeros_(x).data.sum() == 0 and init.ones_(x).data.sum() == 3


def test_weights_exchange_with_torch_when_installed():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch.nn.Sequential(
        torch.nn.Embedding(7, 6),
        torch.nn.Linear(6, 5),
        torch.nn.GELU(approximate="tanh"),
        torch.nn.LayerNorm(5),
        torch.nn.Linear(5, 3, bias=False),
    ).double()
    model = nn.Sequential(
        nn.Embedding(7, 6), nn.Linear(6, 5), nn.GELU(), nn.LayerNorm(5), nn.Linear(5, 3, bias=False)
    ).to("float64")
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    ids = np.array([[0, 6, 2], [3, 3, 1]])
    expected = reference(torch.tensor(ids))
    expected.sum().backward()
    out = model(ids)
    out.sum().backward()
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    for (name, param), (torch_name, torch_param) in zip(
        model.named_parameters(), reference.named_parameters()
    ):
        assert name == torch_name
        np.testing.assert_allclose(param.grad, torch_param.grad.numpy(), rtol=1e-9, atol=1e-12)
