"""The CUDA kernels of lmcore/cuda: every one compiles for compute capability 7.5 (T4)
and 9.0 (H100/H200) without a GPU, and on a GPU every one matches its NumPy reference
on fresh random inputs, outputs poisoned with NaN before each launch."""

import contextlib

import numpy as np
import pytest

from lmcore import backend, cuda
from lmcore.cuda import loader, nvrtc, reference

FAMILIES = loader.families()
gpu = pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")


def test_every_family_defines_kernels():
    assert {"adamw", "attention", "cross_entropy", "gelu", "layernorm", "matmul", "softmax"} <= set(
        FAMILIES
    )
    for family in FAMILIES:
        assert loader.kernel_names(family), family


@pytest.mark.skipif(not nvrtc.available(), reason="NVRTC not installed (nvidia-cuda-nvrtc-cu12)")
@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_compile_without_warnings(family, arch):
    entries = nvrtc.ptx_entries(nvrtc.compile_ptx(loader.source(family), arch, f"{family}.cu"))
    assert set(entries) == set(loader.kernel_names(family)), f"the kernels of {family}.cu"


@pytest.mark.skipif(not nvrtc.available(), reason="NVRTC not installed (nvidia-cuda-nvrtc-cu12)")
def test_compile_errors_carry_the_compiler_log():
    with pytest.raises(nvrtc.CompileError, match="declared but never referenced"):
        nvrtc.compile_ptx('extern "C" __global__ void k(float* x) { int unused; x[0] = 1; }')


def test_kernel_source_is_one_whole_function():
    text = loader.kernel_source("softmax", "softmax_forward_v3")
    assert text.startswith('extern "C" __global__ void softmax_forward_v3(')
    assert text.count("{") == text.count("}") and text.endswith("}")


def test_kernels_switch_nests_and_restores():
    before = cuda.kernels_enabled()
    with cuda.use_kernels(False):
        assert not cuda.kernels_enabled()
        with cuda.use_kernels(True):
            assert cuda.kernels_enabled()
        assert not cuda.kernels_enabled()
    assert cuda.kernels_enabled() == before


def test_kernels_switch_reads_the_environment(monkeypatch):
    monkeypatch.setattr(cuda, "_enabled", None)
    monkeypatch.setenv("LMCORE_KERNELS", "0")
    assert not cuda.kernels_enabled()
    monkeypatch.setenv("LMCORE_KERNELS", "1")
    assert cuda.kernels_enabled()


def test_numpy_arrays_never_take_the_kernel_path():
    assert not cuda.wanted(np.zeros(3, np.float32))


# -- on a GPU ----------------------------------------------------------------------------


@contextlib.contextmanager
def poisoned_allocations():
    """Every CuPy allocation inside starts filled with NaN (all bits set), so an output
    element a kernel forgets to write fails the comparison."""
    import cupy as cp

    pool = cp.get_default_memory_pool()

    def malloc(size):
        memory = pool.malloc(size)
        cp.cuda.runtime.memsetAsync(memory.ptr, 0xFF, size, cp.cuda.get_current_stream().ptr)
        return memory

    cp.cuda.set_allocator(malloc)
    try:
        yield
    finally:
        cp.cuda.set_allocator(pool.malloc)


def close(out, ref, tol=1e-5, atol=1e-6):
    """‖out − ref‖ within ``tol`` ‖ref‖, plus ``atol`` per element for references that are
    zero (a softmax over one key has zero gradient; float32 leaves rounding noise)."""
    out = backend.to_device(out, "cpu").astype(np.float64)
    assert np.isfinite(out).all(), "an output element was not written (NaN left)"
    err = np.linalg.norm(out - ref)
    bound = tol * np.linalg.norm(ref) + atol * np.sqrt(np.size(ref))
    assert err <= bound, f"error {err:.2e} > {bound:.2e} (relative tolerance {tol:.0e})"


@pytest.fixture
def cp_rng():
    import cupy as cp

    return cp.random.default_rng(np.random.default_rng().integers(2**31))  # fresh inputs


SIZES = [(1, 1), (3, 7), (33, 65), (257, 129), (64, 1000), (5, 4099)]
ROW_SIZES = [(1, 4), (9, 128), (33, 380), (65, 384), (7, 768), (70, 1024), (3, 2048)]  # v4 and v3


@gpu
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("shape", SIZES + [(1, 3), (2, 5)])
def test_gelu(shape, version, cp_rng):
    from lmcore.cuda import ops

    x = cp_rng.standard_normal(shape, dtype="float32") * 3
    g = cp_rng.standard_normal(shape, dtype="float32")
    with poisoned_allocations():
        close(ops.gelu_forward(x, version), reference.gelu(x.get()))
        close(ops.gelu_backward(x, g, version), reference.gelu_backward(x.get(), g.get()))


@gpu
@pytest.mark.parametrize("version", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", SIZES + ROW_SIZES)
def test_softmax(shape, version, cp_rng):
    from lmcore.cuda import ops

    x = cp_rng.standard_normal(shape, dtype="float32") * 4
    g = cp_rng.standard_normal(shape, dtype="float32")
    with poisoned_allocations():
        y = ops.softmax_forward(x, version)
        close(y, reference.softmax(x.get()))
        close(
            ops.softmax_backward(y, g),
            reference.softmax_backward(reference.softmax(x.get()), g.get()),
        )


@gpu
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(
    "tq, tk",
    [(1, 1), (5, 5), (7, 19), (64, 64), (100, 257), (1, 4), (12, 128), (100, 256), (3, 1024)],
)
def test_attention_softmax(tq, tk, causal, version, cp_rng):
    from lmcore.cuda import ops

    s = cp_rng.standard_normal((2, 3, tq, tk), dtype="float32") * 4
    g = cp_rng.standard_normal((2, 3, tq, tk), dtype="float32")
    with poisoned_allocations():
        p = ops.attention_softmax_forward(s, 0.3, causal, version=version)
        ref = reference.softmax(s.get(), 0.3, causal)
        close(p, ref)
        close(ops.attention_softmax_backward(p, g, 0.3, causal, version=version),
              reference.softmax_backward(ref, g.get(), 0.3))  # fmt: skip


@gpu
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("version", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", SIZES + ROW_SIZES + [(5000, 384)])  # + rows per warp > 1
def test_layer_norm(shape, version, affine, cp_rng):
    from lmcore.cuda import ops

    x = cp_rng.standard_normal(shape, dtype="float32") * 2 + 1
    w = cp_rng.standard_normal(shape[1], dtype="float32") if affine else None
    b = cp_rng.standard_normal(shape[1], dtype="float32") if affine else None
    dy = cp_rng.standard_normal(shape, dtype="float32")
    host = [None if a is None else a.get() for a in (x, w, b, dy)]
    with poisoned_allocations():
        y, mean, rstd = ops.layer_norm_forward(x, w, b, 1e-5, version)
        ref_y, ref_mean, ref_rstd = reference.layer_norm(*host[:3])
        close(y, ref_y)
        close(mean, ref_mean, 1e-5)
        close(rstd, ref_rstd, 1e-4)
        backward = min(version, 3)  # the three backward versions
        dx, dw, db = ops.layer_norm_backward(dy, x, w, mean, rstd, True, affine, affine, backward)
        ref_dx, ref_dw, ref_db = reference.layer_norm_backward(host[0], host[1], host[3])
        # dx is rstd times a difference of terms of size |dy w|: float32 rounding is
        # relative to rstd |dy w| (large when the row is constant: rstd = 1 / sqrt(eps)).
        scale = ref_rstd.max() * np.abs(host[3] * (host[1] if affine else 1)).max()
        close(dx, ref_dx, 1e-4, atol=1e-6 * scale)
        if affine:
            close(dw, ref_dw, 1e-4)
            close(db, ref_db, 1e-5)


@gpu
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("shape", SIZES + ROW_SIZES + [(5000, 384)])
def test_residual_layer_norm(shape, version, cp_rng):
    from lmcore.cuda import ops

    a, r = (cp_rng.standard_normal(shape, dtype="float32") for _ in range(2))
    w, b = (cp_rng.standard_normal(shape[1], dtype="float32") for _ in range(2))
    with poisoned_allocations():
        total, y, _, _ = ops.residual_layer_norm_forward(a, r, w, b, 1e-5, version)
        close(total, a.get().astype(np.float64) + r.get())
        close(y, reference.layer_norm(a.get().astype(np.float64) + r.get(), w.get(), b.get())[0])


@gpu
@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (7, 65), (33, 1000), (9, 50257), (5, 8192)])
def test_cross_entropy(shape, smoothing, version, cp_rng):
    import cupy as cp

    from lmcore.cuda import ops

    logits = cp_rng.standard_normal(shape, dtype="float32") * 3
    targets = cp_rng.integers(0, shape[1], shape[0]).astype(cp.int64)
    targets[0] = -100  # ignored
    weight = cp_rng.random(shape[0], dtype="float32")
    with poisoned_allocations():
        losses, lse = ops.cross_entropy_forward(logits, targets, -100, smoothing, version)
        close(losses, reference.cross_entropy(logits.get(), targets.get(), -100, smoothing))
        backward = 2 if version == 3 else 1  # the two backward versions
        grad = ops.cross_entropy_backward(logits, targets, lse, weight, -100, smoothing,
                                          backward)  # fmt: skip
        ref = reference.cross_entropy_backward(logits.get(), targets.get(), weight.get(), -100,
                                               smoothing)  # fmt: skip
        close(grad, ref)


@gpu
def test_cross_entropy_of_an_unaligned_array_falls_back(cp_rng):
    from lmcore.cuda import ops

    buffer = cp_rng.standard_normal(3 * 101 + 1, dtype="float32")
    logits = buffer[1:].reshape(3, 101)  # 4 bytes past a 16-byte boundary
    targets = np.array([0, 50, 100])
    losses, lse = ops.cross_entropy_forward(logits, targets)
    close(losses, reference.cross_entropy(logits.get(), targets))
    grad = ops.cross_entropy_backward(logits, targets, lse, np.float32(1.0))
    close(grad, reference.cross_entropy_backward(logits.get(), targets, 1.0))


@gpu
@pytest.mark.parametrize("version", [2, 3, 4])
def test_adamw_versions_match_the_reference(version, cp_rng):
    from lmcore.cuda import ops

    sizes = [1, 3, 1000, 16384, 40001, 16387]
    tensors = [[cp_rng.standard_normal(n, dtype="float32") for _ in range(4)] for n in sizes]
    for t in tensors:
        t[3] = abs(t[3])
    refs = [
        reference.adamw(*(a.get() for a in t), 4, 1e-2, (0.9, 0.95), 1e-8, 0.1) for t in tensors
    ]
    copies = [[a.copy() for a in t] for t in tensors]
    ops.adamw_multi_tensor([(*t, 1e-2, 0.1) for t in tensors], 4, (0.9, 0.95), 1e-8, version)
    for t in copies:
        ops.adamw_tensor(*t, 4, 1e-2, (0.9, 0.95), 1e-8, 0.1)
    for t, c, (p, m, v) in zip(tensors, copies, refs):
        for got in (t, c):
            close(got[0], p, 1e-6)
            close(got[2], m, 1e-6)
            close(got[3], v, 1e-6)


@gpu
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("d", [16, 32, 64])
@pytest.mark.parametrize("tq, tk", [(1, 1), (7, 7), (65, 65), (100, 100), (37, 130), (300, 300)])
def test_flash_attention(tq, tk, d, causal, cp_rng):
    from lmcore.cuda import ops

    q = cp_rng.standard_normal((3, tq, d), dtype="float32")
    k, v = (cp_rng.standard_normal((3, tk, d), dtype="float32") for _ in range(2))
    g = cp_rng.standard_normal((3, tq, d), dtype="float32")
    host = [a.get() for a in (q, k, v, g)]
    with poisoned_allocations():
        out, lse = ops.flash_attention_forward(q, k, v, causal)
        ref_out, ref_lse = reference.attention(*host[:3], causal)
        close(out, ref_out)
        close(lse, ref_lse)
        grads = ops.flash_attention_backward(q, k, v, out, lse, g, causal)
        for got, ref in zip(grads, reference.attention_backward(*host, causal)):
            close(got, ref, 1e-4)


@gpu
@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (33, 65, 17), (128, 128, 128), (200, 300, 129)])
def test_matmul(m, n, k, version, cp_rng):
    from lmcore.cuda import ops

    a = cp_rng.standard_normal((m, k), dtype="float32")
    b = cp_rng.standard_normal((k, n), dtype="float32")
    with poisoned_allocations():
        close(ops.matmul(a, b, version), reference.matmul(a.get(), b.get()))


@gpu
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize(
    "n, out, width, group",
    [(1, 1, 32, None), (1, 576, 576, None), (3, 1536, 576, 32), (8, 49, 1536, 32),
     (2, 7, 96, 96), (5, 33, 40, None), (4, 100, 64, 32)],
)  # fmt: skip
def test_quantized_matmul(n, out, width, group, bits, version, cp_rng):
    import cupy as cp

    from lmcore.cuda import ops
    from lmcore.nn.quantized import quantize_weight

    if bits == 4 and width % 2:
        pytest.skip("4-bit codes pair inputs")
    weight = np.random.default_rng().normal(size=(out, width)).astype(np.float32)
    codes, scales = quantize_weight(weight, bits, group)
    x = cp_rng.standard_normal((n, width), dtype="float32")
    ref = reference.quantized_matmul(x.get(), codes, scales, bits)
    with poisoned_allocations():
        got = ops.quantized_matmul(x, cp.asarray(codes), cp.asarray(scales), bits, version)
    close(got, ref)


@gpu
@pytest.mark.parametrize("rows", [1, 8, 9])  # the fused kernel, then blocks and cuBLAS
def test_quantized_linear_on_the_gpu_matches_the_cpu(rows):
    from lmcore.autograd import Tensor
    from lmcore.nn import Linear
    from lmcore.nn.quantized import QuantizedLinear

    layer, gpu_layer = Linear(576, 192), Linear(576, 192, device="cuda")
    gpu_layer.load_state_dict(layer.state_dict())
    x = np.random.default_rng(0).normal(size=(rows, 576)).astype(np.float32)
    for bits in (8, 4):
        on_cpu = QuantizedLinear.from_linear(layer, bits, 32)
        on_gpu = QuantizedLinear.from_linear(gpu_layer, bits, 32)
        got = on_gpu(Tensor(backend.to_device(x, "cuda"))).numpy()
        np.testing.assert_allclose(got, on_cpu(Tensor(x)).numpy(), rtol=1e-4, atol=1e-4)


@gpu
@pytest.mark.parametrize("block_size", [64, 600])  # the softmax-kernel path, then flash
def test_gpt_step_on_the_kernels_matches_the_generic_path(block_size, monkeypatch):
    """Loss and every gradient of a GPT step, kernels on against CuPy's generic path."""
    from lmcore import rng
    from lmcore.functional import fused_attention as attention
    from lmcore.models import GPT, GPTConfig

    monkeypatch.setattr(cuda, "FLASH_ATTENTION_MIN_KEYS", 512)
    paths = set()
    original = attention.ScaledDotProductAttention.forward

    def spy(self, q, k, v):
        out = original(self, q, k, v)
        paths.add(self.path)
        return out

    monkeypatch.setattr(attention.ScaledDotProductAttention, "forward", spy)
    g = np.random.default_rng(0)
    idx, targets = (g.integers(0, 50, (2, block_size)) for _ in range(2))
    results = {}
    for kernels in (False, True):
        rng.manual_seed(0)
        model = GPT(GPTConfig(50, block_size, 2, 2, 64), device="cuda")
        with cuda.use_kernels(kernels):
            _, loss = model(backend.to_device(idx, "cuda"), backend.to_device(targets, "cuda"))
            loss.backward()
        grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
        results[kernels] = float(loss.item()), grads
    assert paths == {"generic", "flash" if block_size >= 512 else "softmax kernel"}
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    for name, grad in results[False][1].items():
        np.testing.assert_allclose(results[True][1][name], grad, rtol=2e-3, atol=2e-5, err_msg=name)


@gpu
def test_adamw_step_on_the_kernel_matches_the_generic_path():
    from lmcore import rng
    from lmcore.models import GPT, GPTConfig

    results = []
    for kernels in (False, True):
        rng.manual_seed(0)
        model = GPT(GPTConfig(50, 16, 2, 2, 32), device="cuda")
        opt = model.configure_optimizer(weight_decay=0.1, lr=1e-2)
        g = np.random.default_rng(1)
        for _ in range(3):
            for p in model.parameters():
                p.grad = backend.to_device(g.standard_normal(p.shape).astype(np.float32), "cuda")
            with cuda.use_kernels(kernels):
                opt.step()
        results.append({n: backend.to_device(p.data, "cpu") for n, p in model.named_parameters()})
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, rtol=1e-5, atol=1e-6, err_msg=name)


@gpu
def test_captured_step_replays_what_eager_steps_compute():
    """Three training steps replayed from one CUDA graph give the losses and weights of
    three ordinary steps (kernels on, same seed, same batches)."""
    from lmcore import rng
    from lmcore.cuda.graphs import CapturedStep
    from lmcore.models import GPT, GPTConfig

    g = np.random.default_rng(0)
    batches = [tuple(g.integers(0, 50, (4, 32)) for _ in "xy") for _ in range(3)]

    def loss_fn(model, x, y):
        return model(x, y)[1]

    runs = []
    for captured in (False, True):
        rng.manual_seed(0)
        model = GPT(GPTConfig(50, 32, 2, 2, 64, dropout=0.0), device="cuda")
        opt = model.configure_optimizer(weight_decay=0.1, lr=1e-2)
        if captured:
            step = CapturedStep(model, loss_fn, *batches[0], warmup=1, vocab_size=50)
        losses = []
        for x, y in batches:
            if captured:
                loss = float(step(x, y))
            else:
                loss = loss_fn(model, *(backend.to_device(a, "cuda") for a in (x, y)))
                loss.backward()
                loss = float(loss.item())
            opt.step()
            opt.zero_grad()
            losses.append(loss)
        runs.append((losses, {n: p.data.get() for n, p in model.named_parameters()}))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    for name, value in runs[0][1].items():
        np.testing.assert_allclose(runs[1][1][name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    with pytest.raises(IndexError, match="token ids must lie in"):
        step(np.full((4, 32), 50), batches[0][1])
