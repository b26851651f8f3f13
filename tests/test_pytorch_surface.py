"""PyTorch habits that work with lmcore.nn and lmcore.optim: module conversions and walks,
state dicts from any array library, containers, losses, ``lmcore.nn.functional``, exact
GELU, parameter groups and optimizer state. Live comparisons with torch run where it is
installed; everything else runs everywhere."""

import json
import math
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import lmcore.functional
import lmcore.functional.fused_attention
import lmcore.nn.functional as F
from lmcore import backend, nn, optim
from lmcore.autograd import Tensor
from lmcore.gradcheck import gradcheck
from lmcore.rng import manual_seed
from lmcore.train.checkpoint import load_checkpoint, save_checkpoint

needs_gpu = pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


def rand(*shape, seed=0, dtype=np.float64, grad=False):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return Tensor(data, requires_grad=grad)


class Net(nn.Module):
    """Nested modules, a shared sub-module and a buffer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.body = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
        self.head = nn.Linear(4, 3)
        self.again = self.head  # the same module under a second name
        self.register_buffer("scale", np.full(4, 2.0, np.float32))

    def forward(self, ids):  # (B, T) -> (B, T, 3)
        return self.head(self.body(self.embed(ids) * self.scale))


# -- Module: devices and dtypes -----------------------------------------------------------


def test_to_takes_device_and_dtype_in_every_pytorch_form():
    model = nn.Linear(3, 2)
    model(rand(4, 3, dtype=np.float32)).sum().backward()
    assert model.to("float64") is model  # a dtype in the device's place
    assert model.weight.dtype == np.float64 and model.weight.grad.dtype == np.float64
    model.to(dtype=np.float32)
    assert model.weight.dtype == np.float32
    model.to("cpu", "float64")
    assert model.bias.dtype == np.float64 and model.bias.device == "cpu"
    model.to(device="cpu", dtype=np.float16, non_blocking=True)
    assert model.weight.dtype == np.float16
    model.to(Tensor(np.zeros(1, np.float32)))  # a tensor gives device and dtype
    assert model.weight.dtype == np.float32
    assert model.double().weight.dtype == np.float64
    assert model.float().weight.dtype == np.float32
    assert model.half().weight.dtype == np.float16
    assert model.cpu().weight.device == "cpu"
    with pytest.raises(ValueError, match="floating dtype"):
        model.to(dtype="int64")
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        model.to("gpu")
    with pytest.raises(ValueError, match="a device is 'cpu' or 'cuda'"):
        model.to("float32", "float64")


def test_integer_buffers_keep_their_dtype():
    model = Net()
    model.register_buffer("positions", np.arange(3))
    model.double()
    assert model.scale.dtype == np.float64 and model.positions.dtype.kind == "i"


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_says_what_to_install():
    model = nn.Linear(2, 2)
    for move in (model.cuda, lambda: model.to("cuda"), lambda: model.to(device="cuda")):
        with pytest.raises(RuntimeError, match=r'install CuPy with pip install "lmcore\[gpu\]"'):
            move()
    assert model.weight.device == "cpu"


@needs_gpu
def test_cuda_and_back():
    manual_seed(0)
    model = Net()
    ids = np.array([[0, 1, 4]])
    expected = model(ids).numpy()
    assert model.cuda() is model and model.head.weight.device == "cuda"
    np.testing.assert_allclose(model(ids).numpy(), expected, rtol=1e-5, atol=1e-6)
    model.cpu().double()
    assert model.head.weight.device == "cpu" and model.head.weight.dtype == np.float64
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        model.cuda(1)


# -- Module: walking the tree ---------------------------------------------------------------


def test_parameters_and_named_parameters_with_prefix_and_recurse():
    model = Net()
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "embed.weight",
        "body.0.weight",
        "body.0.bias",
        "head.weight",
        "head.bias",
    ]
    assert [n for n, _ in model.named_parameters(prefix="model")][0] == "model.embed.weight"
    assert list(model.named_parameters(recurse=False)) == []
    assert list(model.parameters(recurse=False)) == []
    assert [n for n, _ in model.head.named_parameters(recurse=False)] == ["weight", "bias"]
    assert len(list(model.named_parameters(remove_duplicate=False))) == 7  # head twice
    assert [n for n, _ in model.named_buffers(prefix="m")] == ["m.scale"]
    assert list(model.buffers(recurse=False))[0] is model.scale


def test_named_modules_modules_and_children():
    model = Net()
    assert [n for n, _ in model.named_modules()] == [
        "",
        "embed",
        "body",
        "body.0",
        "body.1",
        "head",
    ]
    assert [n for n, _ in model.named_modules(prefix="net")][:2] == ["net", "net.embed"]
    with_duplicates = [n for n, _ in model.named_modules(remove_duplicate=False)]
    assert with_duplicates[-2:] == ["head", "again"]
    assert [type(m).__name__ for m in model.modules()][:3] == ["Net", "Embedding", "Sequential"]
    assert [n for n, _ in model.named_children()] == ["embed", "body", "head"]
    assert [type(m).__name__ for m in model.children()] == ["Embedding", "Sequential", "Linear"]
    assert model.get_submodule("body.0") is model.body[0]
    assert model.get_submodule("") is model
    with pytest.raises(AttributeError, match="no sub-module 'nope'"):
        model.get_submodule("body.nope")


def test_apply_and_requires_grad_return_the_module():
    model = Net()
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen[-1] == "Net" and seen.count("Linear") == 2
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())


def test_add_module_checks_the_name():
    model = nn.Module()
    with pytest.raises(KeyError, match="without '.'"):
        model.add_module("a.b", nn.Linear(2, 2))
    with pytest.raises(KeyError, match="already has an attribute 'train'"):
        model.add_module("train", nn.Linear(2, 2))
    model.register_module("proj", nn.Linear(2, 2))
    assert [n for n, _ in model.named_children()] == ["proj"]


# -- Module: state dicts ------------------------------------------------------------------


def test_state_dict_prefix_keep_vars_and_destination():
    model = Net()
    saved = model.state_dict(prefix="model.")
    assert list(saved)[:2] == ["model.scale", "model.embed.weight"]
    assert "model.again.weight" in saved  # shared modules are saved under each name
    kept = model.state_dict(keep_vars=True)
    assert kept["head.weight"] is model.head.weight
    assert isinstance(kept["head.weight"], nn.Parameter) and kept["scale"] is model.scale
    destination = {}
    assert model.state_dict(destination=destination) is destination
    copied = model.state_dict()
    copied["head.bias"] += 1  # copies: the model is unchanged
    assert not np.allclose(copied["head.bias"], model.head.bias.data)


class ArrayOnly:
    """An array of another library seen only through ``__array__``."""

    def __init__(self, array):
        self.array = np.asarray(array)
        self.shape = self.array.shape

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)


class DLPackOnly:
    """An array of another library seen only through the DLPack protocol."""

    def __init__(self, array):
        self.array = np.ascontiguousarray(array)
        self.shape = self.array.shape

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


class TorchLike:
    """Duck-typed like a torch tensor: detach(), cpu(), numpy() (and numpy() refused for
    bfloat16, which has no NumPy dtype). Its device makes backend.device_of say "cuda"."""

    def __init__(self, array, bfloat16=False):
        self.array, self.bfloat16 = np.asarray(array), bfloat16
        self.shape = self.array.shape

    def detach(self):
        return self

    def cpu(self):
        return self

    def float(self):
        return TorchLike(self.array.astype(np.float32))

    def numpy(self):
        if self.bfloat16:
            raise TypeError("Got unsupported ScalarType BFloat16")
        return self.array


@pytest.mark.parametrize("wrap", [np.asarray, Tensor, ArrayOnly, DLPackOnly, TorchLike, list])
def test_load_state_dict_takes_arrays_of_any_library(wrap):
    manual_seed(1)
    source = Net().double()
    target = Net()
    values = {k: wrap(v.tolist() if wrap is list else v) for k, v in source.state_dict().items()}
    result = target.load_state_dict(values)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, value in target.state_dict().items():
        assert value.dtype == np.float32  # the model's dtype, not the values'
        np.testing.assert_allclose(value, source.state_dict()[name], rtol=1e-6)


def test_load_state_dict_widens_bfloat16_tensors():
    layer = nn.Linear(2, 1)
    layer.load_state_dict(
        {"weight": TorchLike([[1.0, 2.0]], bfloat16=True), "bias": TorchLike([0.5], True)}
    )
    np.testing.assert_array_equal(layer.weight.data, [[1.0, 2.0]])


def test_load_state_dict_names_every_problem_with_foreign_values():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    saved = {k: TorchLike(v) for k, v in model.state_dict().items()}
    del saved["1.bias"]
    saved["2.weight"] = TorchLike(np.zeros((1, 1)))
    saved["0.weight"] = TorchLike(np.zeros((3, 3)))
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(saved)
    message = str(error.value)
    assert "missing keys: 1.bias" in message
    assert "unexpected keys: 2.weight" in message
    assert "0.weight: checkpoint (3, 3), model (2, 3)" in message


def test_load_state_dict_from_torch_when_installed():
    torch = pytest.importorskip("torch")
    reference = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
    ours = nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="none"), nn.Linear(4, 2))
    ours.load_state_dict(reference.state_dict(keep_vars=True))  # Parameters requiring grad
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    expected = reference(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(Tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    ours.load_state_dict({k: v.to(torch.bfloat16) for k, v in reference.state_dict().items()})
    assert ours[0].weight.dtype == np.float32


@needs_gpu
def test_load_state_dict_takes_cupy_arrays():
    cp = backend.xp("cuda")
    layer = nn.Linear(2, 1)
    layer.load_state_dict({"weight": cp.asarray([[1.0, 2.0]]), "bias": cp.zeros(1)})
    np.testing.assert_array_equal(layer.weight.data, [[1.0, 2.0]])
    layer.to("cuda").load_state_dict({"weight": np.ones((1, 2)), "bias": np.zeros(1)})
    assert layer.weight.device == "cuda"


# -- containers and layers ------------------------------------------------------------------


def test_sequential_slices_keep_the_original_names():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    tail = model[1:]
    assert isinstance(tail, nn.Sequential)
    assert [n for n, _ in tail.named_children()] == ["1", "2"]
    assert list(tail.state_dict()) == ["2.weight", "2.bias"]
    assert tail[1] is model[2]
    named = nn.Sequential(OrderedDict([("hidden", nn.Linear(2, 3)), ("act", nn.Tanh())]))
    assert [n for n, _ in named.named_parameters()] == ["hidden.weight", "hidden.bias"]
    assert named(rand(4, 2, dtype=np.float32)).shape == (4, 3)
    named.append(nn.Linear(3, 1))
    assert [n for n, _ in named.named_children()] == ["hidden", "act", "2"]
    named[1] = nn.ReLU()
    assert isinstance(named.act, nn.ReLU)


def test_sequential_slices_match_torch_when_installed():
    torch = pytest.importorskip("torch")
    reference = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    ours = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    for index in (slice(1, None), slice(None, 2), slice(None, None, 2)):
        assert [n for n, _ in ours[index].named_children()] == [
            n for n, _ in reference[index].named_children()
        ]


def test_module_dict():
    heads = nn.ModuleDict({"a": nn.Linear(4, 2)})
    heads["b"] = nn.Linear(4, 3)
    heads.update([("c", nn.Identity())])
    assert list(heads) == ["a", "b", "c"] and len(heads) == 3 and "b" in heads
    assert list(heads.keys()) == ["a", "b", "c"]
    assert [type(m).__name__ for m in heads.values()] == ["Linear", "Linear", "Identity"]
    assert [n for n, _ in heads.named_parameters()] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert heads.pop("a").out_features == 2 and list(heads) == ["b", "c"]
    del heads["c"]
    assert list(heads.items())[0][0] == "b"
    with pytest.raises(KeyError, match="no key 'x'; its keys: b"):
        heads["x"]
    with pytest.raises(KeyError, match="already has an attribute 'keys'"):
        heads["keys"] = nn.Linear(1, 1)
    heads.clear()
    assert len(heads) == 0 and list(heads.parameters()) == []

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleDict({"x": nn.Linear(2, 2)})

    assert list(TwoHeads().state_dict()) == ["heads.x.weight", "heads.x.bias"]


def test_parameter_list():
    weights = nn.ParameterList([np.zeros((2, 3)), Tensor(np.ones(3))])
    weights.append(nn.Parameter(np.ones(1)))
    assert len(weights) == 3 and all(isinstance(p, nn.Parameter) for p in weights)
    assert [n for n, _ in weights.named_parameters()] == ["0", "1", "2"]
    assert isinstance(weights[1:], nn.ParameterList) and len(weights[1:]) == 2
    weights[0] = np.full((2, 3), 5.0)
    assert weights[0].data[0, 0] == 5.0 and weights[-1].shape == (1,)
    assert "(0): Parameter of shape (2, 3), float64, on cpu" in repr(weights)
    with pytest.raises(TypeError, match="ParameterList or ParameterDict holds Parameters"):
        weights.append("not an array")

    class Mixture(nn.Module):
        def __init__(self):
            super().__init__()
            self.scales = nn.ParameterList([np.ones(2) for _ in range(3)])

    model = Mixture()
    assert list(model.state_dict()) == ["scales.0", "scales.1", "scales.2"]
    assert len(optim.SGD(model.parameters(), lr=0.1).param_groups[0]["params"]) == 3


def test_parameter_dict():
    scales = nn.ParameterDict({"query": np.ones(4), "key": Tensor(np.zeros(4))})
    scales["value"] = nn.Parameter(np.full(4, 2.0))
    assert list(scales) == ["query", "key", "value"] and "key" in scales
    assert all(isinstance(p, nn.Parameter) for p in scales.values())
    assert scales.pop("key").data.sum() == 0 and len(scales) == 2
    with pytest.raises(KeyError, match="no key 'key'; its keys: query, value"):
        scales["key"]
    with pytest.raises(TypeError, match="or ParameterDict holds Parameters"):
        scales["bad"] = "not an array"

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scales = nn.ParameterDict({"a": np.ones(2), "b": np.ones(3)})

    model = Scaled()
    assert list(model.state_dict()) == ["scales.a", "scales.b"]
    model.load_state_dict({"scales.a": np.full(2, 3.0), "scales.b": np.zeros(3)})
    assert model.scales["a"].data.tolist() == [3.0, 3.0]
    assert len(optim.SGD(model.parameters(), lr=0.1).param_groups[0]["params"]) == 2


def test_identity():
    x = rand(2, 3)
    assert nn.Identity()(x) is x
    assert nn.Identity(54, unused="argument")(x) is x
    assert list(nn.Identity().parameters()) == []


# -- losses -------------------------------------------------------------------------------


def test_cross_entropy_loss_module_matches_the_function():
    logits = rand(6, 5)
    targets = np.array([0, 4, -1, 2, 2, 1])
    for reduction in ("mean", "sum", "none"):
        for smoothing in (0.0, 0.2):
            loss = nn.CrossEntropyLoss(
                ignore_index=-1, label_smoothing=smoothing, reduction=reduction
            )(logits, targets)
            expected = F.cross_entropy(
                logits, targets, ignore_index=-1, label_smoothing=smoothing, reduction=reduction
            )
            np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-12)
    assert np.isnan(nn.CrossEntropyLoss()(logits, np.full(6, -100)).item())  # nothing counted


def test_cross_entropy_loss_takes_pytorchs_class_axis():
    logits = rand(2, 5, 3)  # (N, C, T), classes on axis 1
    targets = np.array([[0, 4, 1], [2, 2, -100]])  # (N, T)
    loss = nn.CrossEntropyLoss(reduction="none")(logits, targets)
    expected = F.cross_entropy(F.permute(logits, (0, 2, 1)), targets, reduction="none")
    assert loss.shape == (2, 3)
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-12)
    # lmcore's layout, classes last, still works: (B, T, C) with (B, T) targets
    classes_last = nn.CrossEntropyLoss()(F.permute(logits, (0, 2, 1)), targets)
    np.testing.assert_allclose(
        classes_last.item(), nn.CrossEntropyLoss()(logits, targets).item(), rtol=1e-12
    )
    x = rand(2, 4, 3, grad=True)
    assert gradcheck(lambda t: nn.CrossEntropyLoss(label_smoothing=0.1)(t, targets % 4), x)


def test_cross_entropy_loss_with_class_probabilities():
    logits = rand(4, 3, grad=True)
    targets = np.array([2, 0, 1, 1])
    one_hot = np.eye(3)[targets]
    for smoothing in (0.0, 0.3):
        loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
        np.testing.assert_allclose(
            loss_fn(logits, one_hot).item(), loss_fn(logits, targets).item(), rtol=1e-12
        )
    soft = np.random.default_rng(1).dirichlet(np.ones(3), size=4)
    assert gradcheck(lambda t: nn.CrossEntropyLoss(reduction="sum")(t, soft), logits)
    with pytest.raises(ValueError, match="class probabilities must have the input's shape"):
        nn.CrossEntropyLoss()(logits, np.ones((4, 2)))


_TORCH_CE = Path(__file__).parent / "data" / "torch_cross_entropy.npz"


def _weighted_cross_entropy_cases():
    snap = np.load(_TORCH_CE)
    for reduction in ("mean", "sum", "none"):
        for smoothing in (0.0, 0.2):
            for soft in (False, True):
                yield snap, reduction, smoothing, soft


def _lmcore_weighted(snap, reduction, smoothing, soft):
    x = Tensor(snap["logits"], requires_grad=True)
    loss_fn = nn.CrossEntropyLoss(
        snap["weight"], ignore_index=-1, label_smoothing=smoothing, reduction=reduction
    )
    loss = loss_fn(x, snap["soft"] if soft else snap["targets"])
    loss.sum().backward()
    return loss.numpy(), x.grad


@pytest.mark.parametrize("case", range(12))
def test_class_weights_match_pytorchs_snapshot(case):
    snap, reduction, smoothing, soft = list(_weighted_cross_entropy_cases())[case]
    key = f"{'soft_' if soft else ''}{{}}_{reduction}_{smoothing}"
    loss, grad = _lmcore_weighted(snap, reduction, smoothing, soft)
    np.testing.assert_allclose(loss, snap[key.format("loss")], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, snap[key.format("grad")], rtol=1e-10, atol=1e-12)


def test_class_weights_match_torch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits, weight = rng.normal(size=(9, 4)), rng.uniform(0.1, 3, size=4)
    targets = rng.integers(0, 4, size=9)
    targets[[1, 5]] = -100
    for reduction in ("mean", "sum", "none"):
        for smoothing in (0.0, 0.3):
            x = torch.tensor(logits, requires_grad=True)
            expected = torch.nn.functional.cross_entropy(
                x, torch.from_numpy(targets), weight=torch.from_numpy(weight),
                label_smoothing=smoothing, reduction=reduction,
            )  # fmt: skip
            expected.sum().backward()
            ours_x = Tensor(logits, requires_grad=True)
            ours = F.cross_entropy(
                ours_x, targets, weight=weight, label_smoothing=smoothing, reduction=reduction
            )
            ours.sum().backward()
            np.testing.assert_allclose(ours.numpy(), expected.detach().numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours_x.grad, x.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_class_weights_gradcheck_and_errors():
    weight = np.array([0.5, 2.0, 1.0, 3.0])
    targets = np.array([[0, 3, -100], [1, 1, 2]])
    x = rand(2, 3, 4, grad=True)
    for smoothing in (0.0, 0.25):
        assert gradcheck(
            lambda t, s=smoothing: F.cross_entropy(t, targets, weight=weight, label_smoothing=s),
            x,
        )
    with pytest.raises(ValueError, match="one number per class"):
        F.cross_entropy(x, targets, weight=np.ones(3))


def test_loss_settings_are_checked():
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="average")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="mean_squared")
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(rand(2), rand(2), reduction="avg")


def test_mse_loss_values_reductions_and_gradients():
    x, y = rand(3, 4, grad=True), rand(3, 4, seed=1, grad=True)
    squared = (x.numpy() - y.numpy()) ** 2
    np.testing.assert_allclose(F.mse_loss(x, y).item(), squared.mean(), rtol=1e-12)
    np.testing.assert_allclose(F.mse_loss(x, y, reduction="sum").item(), squared.sum())
    np.testing.assert_allclose(F.mse_loss(x, y, reduction="none").numpy(), squared)
    np.testing.assert_allclose(nn.MSELoss(reduction="sum")(x, y).item(), squared.sum())
    for reduction in ("mean", "sum", "none"):
        assert gradcheck(lambda a, b, r=reduction: F.mse_loss(a, b, reduction=r), x, y)
    assert F.mse_loss(rand(3, dtype=np.float32), np.zeros(3)).dtype == np.float32
    with pytest.warns(UserWarning, match="broadcast"):
        assert F.mse_loss(rand(3, 1), rand(3), reduction="none").shape == (3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.mse_loss(rand(3), rand(3))


def test_losses_match_torch_when_installed():
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(0).standard_normal((2, 5, 3))
    targets = np.array([[0, 4, 1], [2, 2, -1]])
    for reduction in ("mean", "sum", "none"):
        ours_x = Tensor(logits.copy(), requires_grad=True)
        theirs_x = torch.tensor(logits, requires_grad=True)
        ours = nn.CrossEntropyLoss(ignore_index=-1, label_smoothing=0.1, reduction=reduction)
        theirs = torch.nn.CrossEntropyLoss(
            ignore_index=-1, label_smoothing=0.1, reduction=reduction
        )
        a, b = ours(ours_x, targets), theirs(theirs_x, torch.tensor(targets))
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
        a.sum().backward()
        b.sum().backward()
        np.testing.assert_allclose(ours_x.grad, theirs_x.grad.numpy(), rtol=1e-10, atol=1e-12)
        x, y = rand(4, 3), rand(4, 3, seed=1)
        np.testing.assert_allclose(
            nn.MSELoss(reduction=reduction)(x, y).numpy(),
            torch.nn.MSELoss(reduction=reduction)(torch.tensor(x.numpy()), torch.tensor(y.numpy()))
            .detach()
            .numpy(),
            rtol=1e-12,
        )
    soft = np.random.default_rng(1).dirichlet(np.ones(5), size=(2, 3)).transpose(0, 2, 1)
    np.testing.assert_allclose(
        nn.CrossEntropyLoss(label_smoothing=0.2)(Tensor(logits), soft).item(),
        torch.nn.CrossEntropyLoss(label_smoothing=0.2)(
            torch.tensor(logits), torch.tensor(soft)
        ).item(),
        rtol=1e-12,
    )


# -- lmcore.nn.functional ---------------------------------------------------------------


def test_nn_functional_is_lmcore_functional_plus_attention():
    assert nn.functional is F
    for name in lmcore.functional.__all__:
        assert getattr(F, name) is getattr(lmcore.functional, name), name
    assert (
        F.scaled_dot_product_attention
        is lmcore.functional.fused_attention.scaled_dot_product_attention
    )
    assert set(F.__all__) == {*lmcore.functional.__all__, "scaled_dot_product_attention"}
    assert "mse_loss" in F.__all__


# -- exact GELU -------------------------------------------------------------------------


def test_erf_reaches_double_precision():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.linspace(-7, 7, 20001),
            rng.standard_normal(20000) * 3,
            [0.0, -0.0, 0.46875, -0.46875, 4.0, -4.0, 5e-324, 1e-8, 26.0, 40.0, -1e300],
        ]
    )
    reference = np.array([math.erf(v) for v in x])
    assert np.abs(lmcore.functional.activations._erf(x) - reference).max() < 1e-14
    special = lmcore.functional.activations._erf(np.array([np.inf, -np.inf, np.nan]))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2])


def exact_gelu(x):
    """x Phi(x) from the standard library's erfc, in float64."""
    return np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in np.ravel(x)]).reshape(
        np.shape(x)
    )


def test_exact_gelu_matches_erf_in_float64_and_float32():
    x = np.concatenate([np.linspace(-12, 12, 4001), [0.0, -40.0, 40.0]])
    np.testing.assert_allclose(
        F.gelu(Tensor(x), approximate="none").numpy(), exact_gelu(x), rtol=1e-14, atol=1e-16
    )
    x32 = x.astype(np.float32)
    ours = F.gelu(Tensor(x32), approximate="none").numpy()
    assert ours.dtype == np.float32
    np.testing.assert_array_max_ulp(ours, exact_gelu(x32.astype(np.float64)).astype(np.float32), 1)
    extremes = Tensor(np.array([-1e300, -1e30, -50.0, 50.0, 1e30, 1e300]), requires_grad=True)
    with np.errstate(all="raise"):
        y = F.gelu(extremes, approximate="none")
        y.sum().backward()
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 0.0, 50.0, 1e30, 1e300])
    np.testing.assert_array_equal(extremes.grad, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert F.gelu(Tensor(np.array(0.5)), approximate="none").shape == ()


def test_exact_gelu_gradient():
    x = Tensor(np.linspace(-5, 5, 23).reshape(23, 1), requires_grad=True)
    assert gradcheck(lambda t: F.gelu(t, approximate="none"), x)
    F.gelu(x, approximate="none").sum().backward()
    v = x.numpy()
    slope = 0.5 * (1 + np.vectorize(math.erf)(v / math.sqrt(2))) + v * np.exp(
        -v * v / 2
    ) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(x.grad, slope, rtol=1e-13, atol=1e-15)
    scalar = Tensor(np.array(0.3), requires_grad=True)
    F.gelu(scalar, approximate="none").backward()
    assert isinstance(scalar.grad.data, np.ndarray) and scalar.grad.shape == ()
    x32 = Tensor(np.linspace(-5, 5, 11, dtype=np.float32), requires_grad=True)
    F.gelu(x32, approximate="none").sum().backward()
    assert x32.grad.dtype == np.float32 and np.isfinite(x32.grad.numpy()).all()


def test_gelu_forms_and_defaults():
    x = rand(4, 5)
    exact = F.gelu(x, approximate="none").numpy()
    tanh = F.gelu(x, approximate="tanh").numpy()
    np.testing.assert_array_equal(F.gelu(x).numpy(), tanh)  # lmcore's default: GPT-2's form
    np.testing.assert_array_equal(nn.GELU()(x).numpy(), tanh)
    np.testing.assert_array_equal(nn.GELU(approximate="none")(x).numpy(), exact)
    assert 0 < np.abs(exact - tanh).max() < 5e-4
    assert repr(nn.GELU(approximate="none")) == "GELU(approximate='none')"
    assert nn.MLP(8).gelu.approximate == "tanh"  # GPT's MLP keeps GPT-2's form
    for bad in (lambda: F.gelu(x, approximate="erf"), lambda: nn.GELU("exact")):
        with pytest.raises(ValueError, match="'none'.*'tanh'"):
            bad()
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="none"), nn.Linear(4, 2)).double()
    assert gradcheck(lambda t: model(t), rand(2, 3, grad=True))


def test_gelu_matches_torch_when_installed():
    torch = pytest.importorskip("torch")
    x = np.linspace(-8, 8, 1001)
    for approximate in ("none", "tanh"):
        ours = Tensor(x.copy(), requires_grad=True)
        theirs = torch.tensor(x, requires_grad=True)
        a = F.gelu(ours, approximate=approximate)
        b = torch.nn.functional.gelu(theirs, approximate=approximate)
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-14, atol=1e-15)
        a.sum().backward()
        b.sum().backward()
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-13, atol=1e-15)


@needs_gpu
def test_exact_gelu_on_the_gpu_matches_the_cpu():
    cp = backend.xp("cuda")
    x = np.random.default_rng(0).standard_normal(1000) * 4
    for dtype in (np.float32, np.float64):
        on_gpu = Tensor(cp.asarray(x.astype(dtype)), requires_grad=True)
        on_cpu = Tensor(x.astype(dtype), requires_grad=True)
        for t in (on_gpu, on_cpu):
            F.gelu(t, approximate="none").sum().backward()
        np.testing.assert_allclose(
            F.gelu(on_gpu, approximate="none").numpy(),
            F.gelu(on_cpu, approximate="none").numpy(),
            rtol=1e-6 if dtype == np.float32 else 1e-14,
        )
        np.testing.assert_allclose(on_gpu.grad.numpy(), on_cpu.grad, rtol=1e-5, atol=1e-6)


# -- optimizers -------------------------------------------------------------------------


def test_add_param_group_takes_defaults_and_is_checked():
    body, head = nn.Linear(3, 3), nn.Linear(3, 2)
    optimizer = optim.AdamW(body.parameters(), lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)
    optimizer.add_param_group({"params": head.parameters(), "lr": 0.1})
    new = optimizer.param_groups[1]
    assert new["lr"] == 0.1 and new["betas"] == (0.8, 0.9) and new["weight_decay"] == 0.1
    assert new["params"] == [head.weight, head.bias]
    before = head.weight.data.copy()
    head(rand(4, 3, dtype=np.float32)).sum().backward()
    optimizer.step()
    assert not np.array_equal(head.weight.data, before)

    with pytest.raises(ValueError, match="two parameter groups"):
        optimizer.add_param_group({"params": [head.bias]})
    with pytest.raises(ValueError, match="no hyperparameter momentum"):
        optimizer.add_param_group({"params": [nn.Parameter(np.zeros(1))], "momentum": 0.9})
    with pytest.raises(ValueError, match="learning rate"):
        optimizer.add_param_group({"params": [nn.Parameter(np.zeros(1))], "lr": -1.0})
    with pytest.raises(TypeError, match="fixed order, got a set"):
        optimizer.add_param_group({"params": {nn.Parameter(np.zeros(1))}})
    with pytest.raises(TypeError, match="dict with a 'params' entry"):
        optimizer.add_param_group([nn.Parameter(np.zeros(1))])
    with pytest.raises(TypeError, match="got one Parameter"):
        optim.SGD(nn.Parameter(np.zeros(3)), lr=0.1)
    assert len(optimizer.param_groups) == 2  # failed additions left nothing behind


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: optim.Adam(p, lr=0.01),
        lambda p: optim.AdamW(p, lr=0.01),
    ],
)
def test_state_follows_the_model_to_float64(make):
    manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = make(model.parameters())
    x = rand(4, 3, dtype=np.float32)
    model(x).sum().backward()
    optimizer.step()
    assert all(
        v.dtype == np.float32
        for s in optimizer.state.values()
        for v in s.values()
        if hasattr(v, "dtype")
    )
    model.to("float64")
    optimizer.zero_grad()
    model(x.to("float64")).sum().backward()
    optimizer.step()
    for param, state in optimizer.state.items():
        arrays = [v for v in state.values() if hasattr(v, "dtype")]
        assert arrays and all(v.dtype == np.float64 for v in arrays)
        assert param.data.dtype == np.float64


def test_state_keeps_its_values_when_it_follows():
    # Adam run in float64 throughout equals one that starts in float32 state values
    # converted exactly (steps with float64-representable numbers).
    param = nn.Parameter(np.array([1.0, -1.0], np.float32))
    optimizer = optim.Adam([param], lr=0.5)
    param.grad = np.array([0.5, -0.25], np.float32)
    optimizer.step()
    exp_avg = optimizer.state[param]["exp_avg"].copy()
    param.data, param.grad = param.data.astype(np.float64), np.zeros(2)
    optimizer.step()
    np.testing.assert_allclose(optimizer.state[param]["exp_avg"], 0.9 * exp_avg.astype(np.float64))
    assert optimizer.state[param]["step"] == 2


@needs_gpu
def test_state_follows_the_model_to_the_gpu():
    for make in (lambda p: optim.Adam(p, lr=0.01), lambda p: optim.AdamW(p, lr=0.01)):
        manual_seed(0)
        model = nn.Linear(3, 2)
        optimizer = make(model.parameters())
        model(rand(4, 3, dtype=np.float32)).sum().backward()
        optimizer.step()
        model.to("cuda")
        model(rand(4, 3, dtype=np.float32).to("cuda")).sum().backward()
        optimizer.step()
        for state in optimizer.state.values():
            assert all(backend.device_of(state[k]) == "cuda" for k in ("exp_avg", "exp_avg_sq"))


def make_run():
    manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    optimizer = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=0.01, betas=(0.8, 0.95))
    model(rand(5, 3, dtype=np.float32)).sum().backward()
    optimizer.step()
    return model, optimizer


def assert_same_state(loaded: dict, saved: dict):
    assert loaded["param_groups"] == saved["param_groups"]
    for loaded_group, saved_group in zip(loaded["param_groups"], saved["param_groups"]):
        for key, value in saved_group.items():
            assert type(loaded_group[key]) is type(value), key
    assert sorted(loaded["state"]) == sorted(saved["state"])
    for index, values in saved["state"].items():
        for key, value in values.items():
            np.testing.assert_array_equal(loaded["state"][index][key], value)


def test_state_dict_round_trip_through_json_keeps_types():
    model, optimizer = make_run()
    saved = optimizer.state_dict()
    as_json = json.loads(json.dumps({**saved, "state": {}}))
    as_json["state"] = {str(k): v for k, v in saved["state"].items()}  # JSON's string keys
    _, fresh = make_run()
    fresh.param_groups[0]["betas"] = (0.5, 0.5)
    fresh.load_state_dict(as_json)
    assert fresh.param_groups[0]["betas"] == (0.8, 0.95)
    assert isinstance(fresh.param_groups[0]["betas"], tuple)
    assert_same_state(fresh.state_dict(), saved)


def test_state_dict_round_trip_through_a_checkpoint(tmp_path):
    model, optimizer = make_run()
    scheduler = optim.LambdaLR(optimizer, optim.WarmupCosine(warmup_steps=2, total_steps=10))
    scheduler.step()
    saved = optimizer.state_dict()
    save_checkpoint(tmp_path / "run.safetensors", step=1, model=model, optimizer=optimizer)
    fresh_model, fresh = make_run()
    load_checkpoint(tmp_path / "run.safetensors", model=fresh_model, optimizer=fresh)
    assert_same_state(fresh.state_dict(), saved)
    assert "initial_lr" in fresh.param_groups[0]


def test_param_groups_match_torch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    starts = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    ours = [nn.Parameter(s.copy()) for s in starts]
    theirs = [torch.nn.Parameter(torch.tensor(s)) for s in starts]
    ours_opt = optim.AdamW([ours[0]], lr=0.1, betas=(0.8, 0.9))
    theirs_opt = torch.optim.AdamW([theirs[0]], lr=0.1, betas=(0.8, 0.9))
    ours_opt.add_param_group({"params": [ours[1]], "lr": 0.05, "weight_decay": 0.0})
    theirs_opt.add_param_group({"params": [theirs[1]], "lr": 0.05, "weight_decay": 0.0})
    for _ in range(4):
        grads = [rng.standard_normal(s.shape) for s in starts]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.copy(), torch.tensor(g)
        ours_opt.step()
        theirs_opt.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10)


# -- docstring examples ---------------------------------------------------------------
