"""Optimizers against steps worked out by hand, parameter groups, saving and resuming,
schedules and gradient clipping."""

import math

import numpy as np
import pytest

from lmcore import backend, nn, optim
from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.rng import manual_seed

# Three steps on a two-element parameter starting at [1, -1], with fixed gradients.
GRADS = [[1.0, 2.0], [-2.0, 1.0], [0.5, 0.5]]


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    """Layers are made on the CPU here, also on a machine with a GPU (tests that use the GPU
    move models there themselves)."""
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")


def trajectory(make_optimizer, dtype=np.float64, steps=3):
    """The parameter after each step when the gradients of GRADS are fed in turn."""
    param = nn.Parameter(np.array([1.0, -1.0], dtype))
    optimizer = make_optimizer([param])
    values = []
    for grad in GRADS[:steps]:
        param.grad = np.array(grad, dtype)
        optimizer.step()
        values.append(param.data.copy())
    return np.array(values)


def test_sgd_by_hand():
    # p <- p - 0.1 g
    expected = [[0.9, -1.2], [1.1, -1.3], [1.05, -1.35]]
    np.testing.assert_allclose(trajectory(lambda p: optim.SGD(p, lr=0.1)), expected, atol=1e-12)


def test_sgd_momentum_by_hand():
    # buf1 = g1 = [1, 2]                        p1 = [1, -1] - 0.1 [1, 2]       = [0.9, -1.2]
    # buf2 = 0.9 [1, 2] + [-2, 1] = [-1.1, 2.8]  p2 = p1 - 0.1 buf2            = [1.01, -1.48]
    # buf3 = 0.9 buf2 + [0.5, 0.5] = [-0.49, 3.02]  p3 = p2 - 0.1 buf3         = [1.059, -1.782]
    expected = [[0.9, -1.2], [1.01, -1.48], [1.059, -1.782]]
    result = trajectory(lambda p: optim.SGD(p, lr=0.1, momentum=0.9))
    np.testing.assert_allclose(result, expected, atol=1e-12)


def test_sgd_nesterov_by_hand():
    # step = g + 0.9 buf with buf as for momentum:
    # [1, 2] + 0.9 [1, 2] = [1.9, 3.8]               p1 = [0.81, -1.38]
    # [-2, 1] + 0.9 [-1.1, 2.8] = [-2.99, 3.52]      p2 = [1.109, -1.732]
    # [0.5, 0.5] + 0.9 [-0.49, 3.02] = [0.059, 3.218]  p3 = [1.1031, -2.0538]
    expected = [[0.81, -1.38], [1.109, -1.732], [1.1031, -2.0538]]
    result = trajectory(lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))
    np.testing.assert_allclose(result, expected, atol=1e-12)


def test_sgd_weight_decay_by_hand():
    # g + 0.1 p: [1 + 0.1, 2 - 0.1] = [1.1, 1.9]          p1 = [0.89, -1.19]
    #            [-2 + 0.089, 1 - 0.119] = [-1.911, 0.881]  p2 = [1.0811, -1.2781]
    expected = [[0.89, -1.19], [1.0811, -1.2781]]
    result = trajectory(lambda p: optim.SGD(p, lr=0.1, weight_decay=0.1), steps=2)
    np.testing.assert_allclose(result, expected, atol=1e-12)


# Adam, lr 0.1, betas (0.9, 0.999), eps 1e-8, first element:
# t=1: m = 0.1, v = 0.001; m/(1-0.9) = 1, v/(1-0.999) = 1      p = 1 - 0.1 * 1 / (1 + 1e-8)
# t=2: m = 0.09 - 0.2 = -0.11, v = 0.000999 + 0.004 = 0.004999
#      m_hat = -0.11 / 0.19 = -0.578947, v_hat = 0.004999 / 0.001999 = 2.500750
#      p = 0.9 + 0.1 * 0.578947 / (1.581376 + 1e-8) = 0.936610
# t=3: m = -0.099 + 0.05 = -0.049, v = 0.004994001 + 0.00025 = 0.005244001
#      m_hat = -0.049 / 0.271 = -0.180812, v_hat = 0.005244001 / 0.002997001 = 1.749749
#      p = 0.936610 + 0.1 * 0.180812 / 1.322781 = 0.950279
# The second element goes the same way with g = 2, 1, 0.5.
ADAM_EXPECTED = [
    [0.900000001000, -1.099999999500],
    [0.936610353472, -1.193217962791],
    [0.950279419674, -1.277488128350],
]


def test_adam_by_hand():
    result = trajectory(lambda p: optim.Adam(p, lr=0.1))
    np.testing.assert_allclose(result, ADAM_EXPECTED, atol=1e-10)


def test_adam_l2_weight_decay_by_hand():
    # The decay joins the gradient: g1 = [1 + 0.1, 2 - 0.1] = [1.1, 1.9], so the first step
    # is again lr * sign(g) (minus eps); at t=2 g = [-2 + 0.09, 1 - 0.11] = [-1.91, 0.89],
    # m = [0.099 - 0.191, 0.171 + 0.089] = [-0.092, 0.26],
    # v = [0.00120879 + 0.0036481, 0.00360639 + 0.0007921] = [0.00485689, 0.00439849],
    # p = p1 - 0.1 (m / 0.19) / (sqrt(v / 0.001999) + 1e-8) = [0.931064, -1.192252].
    result = trajectory(lambda p: optim.Adam(p, lr=0.1, weight_decay=0.1), steps=2)
    expected = [[0.900000000909, -1.099999999474], [0.931064294839, -1.192251690694]]
    np.testing.assert_allclose(result, expected, atol=1e-10)


def test_adamw_by_hand():
    # Decoupled: p <- p (1 - 0.1 * 0.1) first, then the Adam step on the raw gradient, whose
    # moments are those of plain Adam: t=1: [1, -1] * 0.99 - 0.1 (1 - 1e-8) = [0.89, -1.09];
    # t=2: 0.89 * 0.99 + 0.1 * 0.578947 / 1.581376 = 0.917710; t=3: 0.922202.
    expected = [
        [0.890000001000, -1.089999999500],
        [0.917710353462, -1.172317962796],
        [0.922202316129, -1.244864948727],
    ]
    result = trajectory(lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.1))
    np.testing.assert_allclose(result, expected, atol=1e-10)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: optim.Adam(p, lr=0.1),
        lambda p: optim.AdamW(p, lr=0.1),
    ],
)
def test_float32_stays_float32(make):
    result = trajectory(make, dtype=np.float32)
    assert result.dtype == np.float32
    param = nn.Parameter(np.ones(2, np.float32))
    optimizer = make([param])
    param.grad = np.ones(2, np.float32)
    data = param.data
    optimizer.step()
    assert param.data is data  # updated in place
    assert all(
        v.dtype == np.float32 for v in optimizer.state[param].values() if hasattr(v, "dtype")
    )


def test_parameters_without_gradient_are_skipped():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = optim.AdamW([a, b], lr=0.1)
    a.grad = np.ones(2)
    optimizer.step()
    np.testing.assert_array_equal(b.data, np.ones(2))
    assert b not in optimizer.state
    optimizer.zero_grad()
    assert a.grad is None


def test_weight_decay_groups_exempt_biases_and_norms():
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = optim.weight_decay_groups(model, 0.5)
    assert [p.shape for p in decay["params"]] == [(5, 4), (4, 4)]
    assert [p.shape for p in no_decay["params"]] == [(4,), (4,), (4,)]
    optimizer = optim.AdamW([decay, no_decay], lr=0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0]
    assert optimizer.param_groups[1]["betas"] == (0.9, 0.999)  # defaults fill the rest
    before = model.state_dict()
    for p in model.parameters():
        p.grad = np.zeros(p.shape, np.float32)  # only the decay moves anything
    optimizer.step()
    after = model.state_dict()
    np.testing.assert_allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5), rtol=1e-6)
    for name in ("1.bias", "2.weight", "2.bias"):
        np.testing.assert_array_equal(after[name], before[name])


def test_each_group_has_its_own_learning_rate():
    a, b = nn.Parameter(np.zeros(1)), nn.Parameter(np.zeros(1))
    optimizer = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad, b.grad = np.ones(1), np.ones(1)
    optimizer.step()
    assert a.data[0] == pytest.approx(-0.1) and b.data[0] == pytest.approx(-1.0)


def test_bad_arguments_are_explained():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="two parameter groups"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="no hyperparameter momentum"):
        optim.Adam([{"params": [p], "momentum": 0.9}])
    with pytest.raises(TypeError, match="leaf tensors"):
        optim.SGD([p * 2], lr=0.1)


# -- saving and resuming ----------------------------------------------------------------


def make_run(seed):
    manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 2))
    optimizer = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=0.05)
    scheduler = optim.LambdaLR(optimizer, optim.WarmupCosine(warmup_steps=2, total_steps=10))
    return model, optimizer, scheduler


def train_steps(model, optimizer, scheduler, steps, start):
    for step in range(start, start + steps):
        rng = np.random.default_rng(step)
        x = Tensor(rng.standard_normal((16, 3)).astype(np.float32))
        y = rng.integers(0, 2, 16)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()


def test_resume_from_state_dicts_continues_identically():
    model, optimizer, scheduler = make_run(0)
    train_steps(model, optimizer, scheduler, 3, start=0)
    saved = (model.state_dict(), optimizer.state_dict(), scheduler.state_dict())
    assert sorted(saved[1]["state"]) == list(range(6))
    assert set(saved[1]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    train_steps(model, optimizer, scheduler, 3, start=3)
    # the saved optimizer state is a copy: three more steps did not change it
    assert saved[1]["state"][0]["step"] == 3

    fresh_model, fresh_optimizer, fresh_scheduler = make_run(1)
    fresh_model.load_state_dict(saved[0])
    fresh_optimizer.load_state_dict(saved[1])
    fresh_scheduler.load_state_dict(saved[2])
    train_steps(fresh_model, fresh_optimizer, fresh_scheduler, 3, start=3)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(fresh_model.state_dict()[name], value)
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_load_state_dict_rejects_other_groupings():
    model, optimizer, _ = make_run(0)
    other = optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match=r"sizes \[2, 4\].*\[6\]"):
        other.load_state_dict(optimizer.state_dict())


# -- schedules --------------------------------------------------------------------------


def test_warmup_cosine_values():
    schedule = optim.WarmupCosine(warmup_steps=10, total_steps=110, min_factor=0.1)
    assert schedule(0) == pytest.approx(0.1)  # (0 + 1) / 10
    assert schedule(9) == pytest.approx(1.0)  # warm-up ends at the peak
    assert schedule(10) == pytest.approx(1.0)  # cosine starts at the peak
    assert schedule(60) == pytest.approx(0.1 + 0.9 * 0.5)  # midpoint: halfway to the floor
    assert schedule(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert schedule(110) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        optim.WarmupCosine(20, 10)


def test_step_decay_and_constant_with_warmup():
    decay = optim.StepDecay(step_size=3, gamma=0.5)
    assert [decay(s) for s in (0, 2, 3, 5, 6, 9)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
    warm = optim.ConstantWithWarmup(warmup_steps=5)
    assert [warm(s) for s in (0, 4, 5, 100)] == [0.2, 1.0, 1.0, 1.0]
    assert optim.ConstantWithWarmup(0)(0) == 1.0


def test_lambda_lr_sets_each_group_from_its_base_rate():
    a, b = nn.Parameter(np.zeros(1)), nn.Parameter(np.zeros(1))
    optimizer = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=1.0)
    scheduler = optim.LambdaLR(optimizer, optim.StepDecay(step_size=2, gamma=0.1))
    seen = []
    for _ in range(5):
        seen.append(scheduler.get_last_lr())
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(
        seen, [[1.0, 0.5], [1.0, 0.5], [0.1, 0.05], [0.1, 0.05], [0.01, 0.005]]
    )
    # A scheduler made again (e.g. after loading the optimizer) uses the initial rates.
    assert optim.LambdaLR(optimizer, lambda step: 1.0).base_lrs == [1.0, 0.5]


# -- clipping -----------------------------------------------------------------------------


def test_clip_grad_norm_scales_all_gradients_together():
    a, b, c = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(1)), nn.Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 4.0]), np.array([12.0])  # joint norm sqrt(9 + 16 + 144) = 13
    norm = optim.clip_grad_norm_([a, b, c], max_norm=6.5)
    assert isinstance(norm, Tensor) and norm.item() == pytest.approx(13.0)
    np.testing.assert_allclose(a.grad, [1.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(b.grad, [6.0], rtol=1e-6)
    assert c.grad is None

    norm = optim.clip_grad_norm_([a, b], max_norm=100.0)  # below the limit: unchanged
    assert norm.item() == pytest.approx(6.5)
    np.testing.assert_allclose(b.grad, [6.0], rtol=1e-6)


def test_clip_grad_norm_other_norms_and_dtypes():
    p = nn.Parameter(np.zeros(3, np.float32))
    p.grad = np.array([1.0, -4.0, 2.0], np.float32)
    assert optim.clip_grad_norm_(p, 2.0, norm_type=float("inf")).item() == pytest.approx(4.0)
    np.testing.assert_allclose(p.grad, [0.5, -2.0, 1.0], rtol=1e-5)
    assert p.grad.dtype == np.float32
    assert optim.clip_grad_norm_(p, 10.0, norm_type=1).item() == pytest.approx(3.5)
    assert optim.clip_grad_norm_([], 1.0).item() == 0.0


# -- end to end ----------------------------------------------------------------------------


def test_mlp_learns_a_toy_problem_with_adamw():
    """Two interleaved spirals are not linearly separable; a small MLP separates them."""
    manual_seed(0)
    rng = np.random.default_rng(0)
    angle = rng.uniform(0.5, 3 * np.pi, 128)
    label = rng.integers(0, 2, 128)
    radius = angle + rng.normal(0, 0.1, 128)
    sign = np.where(label == 1, 1.0, -1.0)
    points = np.stack([np.cos(angle), np.sin(angle)], 1) * (radius * sign)[:, None] / 10  # (128, 2)
    x = Tensor(points.astype(np.float32))
    model = nn.Sequential(
        nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)
    )
    optimizer = optim.AdamW(optim.weight_decay_groups(model, 1e-4), lr=0.02)
    scheduler = optim.LambdaLR(optimizer, optim.WarmupCosine(warmup_steps=5, total_steps=150))
    first = None
    for _ in range(150):
        loss = F.cross_entropy(model(x), label)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    assert first > 0.6 and loss.item() < 0.1
    accuracy = (model(x).numpy().argmax(1) == label).mean()
    assert accuracy > 0.97


def test_matches_torch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    start = rng.standard_normal((4, 3))
    grads = rng.standard_normal((5, 4, 3))
    pairs = [
        (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
        (lambda p: optim.Adam(p, lr=0.1, weight_decay=0.01),
         lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.01)),
        (lambda p: optim.AdamW(p, lr=0.1, betas=(0.8, 0.9)),
         lambda p: torch.optim.AdamW(p, lr=0.1, betas=(0.8, 0.9))),
    ]  # fmt: skip
    for ours, theirs in pairs:
        param = nn.Parameter(start.copy())
        reference = torch.nn.Parameter(torch.tensor(start))
        optimizer, torch_optimizer = ours([param]), theirs([reference])
        for grad in grads:
            param.grad, reference.grad = grad.copy(), torch.tensor(grad)
            optimizer.step()
            torch_optimizer.step()
        np.testing.assert_allclose(param.data, reference.detach().numpy(), rtol=1e-10)


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_updates_and_clipping_on_the_gpu():
    cp = backend.xp("cuda")
    param = nn.Parameter(cp.asarray([1.0, -1.0]))
    optimizer = optim.Adam([param], lr=0.1)
    for grad in GRADS:
        param.grad = cp.asarray(grad)
        optimizer.step()
    np.testing.assert_allclose(param.data.get(), ADAM_EXPECTED[-1], atol=1e-10)

    cpu_param = nn.Parameter(np.array([1.0, -1.0]))
    cpu_optimizer = optim.Adam([cpu_param], lr=0.1)
    cpu_optimizer.load_state_dict(optimizer.state_dict())  # CuPy state onto the CPU
    assert isinstance(cpu_optimizer.state[cpu_param]["exp_avg"], np.ndarray)

    param.grad = cp.asarray([3.0, 4.0], dtype=cp.float64)
    norm = optim.clip_grad_norm_([param], max_norm=1.0)
    assert norm.device == "cuda" and norm.item() == pytest.approx(5.0)
    np.testing.assert_allclose(param.grad.numpy(), [0.6, 0.8], rtol=1e-6)
