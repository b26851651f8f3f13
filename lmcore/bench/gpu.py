"""GPU benchmark: every CUDA kernel version against CuPy's generic path and the device's
measured ceilings, attention memory against context length, and the GPT training step
as a ladder of optimisations beside PyTorch, written as one JSON record.

Ceilings are measured first, on the device at hand: the copy bandwidth (a large
device-to-device copy, bytes read plus written) and the float32 and TF32 matrix rates
(cuBLAS through CuPy). Each kernel's time is the median of CUDA-event timings after a
warm-up; its GB/s counts the fewest bytes it must move (each input read once, each
output written once), so ``fraction_of_copy`` says how close it comes to the floor.

Without a GPU, :func:`load_results` returns the committed record of a real run, which
the chapter on kernels draws its figures from.

Example:
    $ lmcore bench gpu                        # print the tables
    $ lmcore bench gpu --write lmcore/bench/results/gpu.json
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import lmcore
from lmcore import backend, cuda, data
from lmcore.bench.common import print_table
from lmcore.cuda import reference
from lmcore.tokenizers import CharTokenizer

RESULTS = Path(__file__).parent / "results" / "gpu.json"
TRAIN_SHAPE = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=64, vocab=65)


def load_results(path: str | Path | None = None) -> dict:
    """The recorded GPU run (``lmcore/bench/results/gpu.json`` unless ``path`` is given)."""
    return json.loads(Path(path or RESULTS).read_text())


# -- timing ----------------------------------------------------------------------------


def _time_ms(fn, repeat: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` by CUDA events, after ``warmup`` calls."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


class _PeakMemory:
    """The most bytes that CuPy's allocations held at once inside a ``with`` block, beyond
    what was held on entry (a CuPy memory hook that follows every malloc and free)."""

    def __enter__(self):
        from cupy.cuda import memory_hook

        outer = self

        class Hook(memory_hook.MemoryHook):
            name = "lmcore_peak"

            def malloc_postprocess(self, **kw):
                outer.current += kw["mem_size"]
                outer.peak = max(outer.peak, outer.current)

            def free_postprocess(self, **kw):
                outer.current -= kw["mem_size"]

        self.current = self.peak = 0
        self.hook = Hook()
        self.hook.__enter__()
        return self

    def __exit__(self, *exc):
        self.hook.__exit__(*exc)
        return False

    @property
    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


def _device() -> dict:
    import cupy as cp

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]

    def version(v):
        return f"{v // 1000}.{v % 1000 // 10}"

    return {
        "name": name,
        "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": props["multiProcessorCount"],
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "driver": version(cp.cuda.runtime.driverGetVersion()),
        "cuda_runtime": version(cp.cuda.runtime.runtimeGetVersion()),
    }


def _versions(torch) -> dict:
    import cupy as cp

    return {
        "lmcore": lmcore.__version__,
        "cupy": cp.__version__,
        "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "python": platform.python_version(),
    }


def _revision() -> str | None:
    """The git commit of the lmcore source that ran, when it is a checkout."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def _ceilings(quick: bool) -> dict:
    import cupy as cp

    n = 2**26 if quick else 2**28  # floats: 256 MiB or 1 GiB
    a = cp.random.random(n, dtype=cp.float32)
    b = cp.empty_like(a)
    copy = _time_ms(lambda: b.data.copy_from_device_async(a.data, a.nbytes))
    size = 2048 if quick else 8192
    x = cp.random.standard_normal((size, size), dtype=cp.float32)
    y = cp.random.standard_normal((size, size), dtype=cp.float32)
    flops = 2 * size**3
    cuda.allow_tf32(False)
    fp32 = _time_ms(lambda: x @ y, repeat=5)
    cuda.allow_tf32(True)
    tf32 = _time_ms(lambda: x @ y, repeat=5)
    cuda.allow_tf32(False)
    return {
        "copy_gb_s": round(2 * a.nbytes / copy / 1e6, 1),
        "fp32_matmul_tflop_s": round(flops / fp32 / 1e9, 1),
        "tf32_matmul_tflop_s": round(flops / tf32 / 1e9, 1),
    }


# -- kernels ---------------------------------------------------------------------------


def _rel_error(out, ref) -> float:
    out = backend.to_device(out, "cpu").astype(np.float64)
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def _kernel_rows(quick: bool, ceilings: dict) -> list[dict]:
    import cupy as cp

    from lmcore import functional as F
    from lmcore.autograd import Tensor, no_grad
    from lmcore.cuda import ops

    g = cp.random.default_rng(0)
    rows = []
    copy = ceilings["copy_gb_s"]

    def add(family, op, version, label, shape, ms, nbytes, err, flops=None):
        gb_s = nbytes / ms / 1e6
        rows.append(
            {
                "family": family,
                "op": op,
                "version": version,
                "label": label,
                "shape": str(shape),
                "ms": round(ms, 4),
                "gb_s": round(gb_s, 1),
                "fraction_of_copy": round(gb_s / copy, 3),
                "tflop_s": None if flops is None else round(flops / ms / 1e9, 2),
                "max_rel_error": err,
            }
        )

    def generic(fn):
        """Time ``fn`` with lmcore's kernels off: CuPy's generic functions."""
        with cuda.use_kernels(False), no_grad():
            return _time_ms(fn)

    # GELU: 8 bytes an element forward (x in, y out), 12 backward.
    shape = (2**14, 1024) if quick else (2**16, 1024)
    x = g.standard_normal(shape, dtype=cp.float32)
    gr = g.standard_normal(shape, dtype=cp.float32)
    ref_rows = slice(0, 256)
    ref = reference.gelu(backend.to_device(x[ref_rows], "cpu"))
    ref_b = reference.gelu_backward(
        backend.to_device(x[ref_rows], "cpu"), backend.to_device(gr[ref_rows], "cpu")
    )
    add("gelu", "forward", "cupy", "CuPy generic (lmcore's NumPy code on CuPy)", shape,
        generic(lambda: F.gelu(Tensor(x))), 8 * x.size, None)  # fmt: skip
    for v, label in ((1, "one thread per element"), (2, "float4: 16-byte loads")):
        err = _rel_error(ops.gelu_forward(x, v)[ref_rows], ref)
        add("gelu", "forward", f"v{v}", label, shape, _time_ms(lambda v=v: ops.gelu_forward(x, v)),
            8 * x.size, err)  # fmt: skip
        err = _rel_error(ops.gelu_backward(x, gr, v)[ref_rows], ref_b)
        add("gelu", "backward", f"v{v}", label, shape,
            _time_ms(lambda v=v: ops.gelu_backward(x, gr, v)), 12 * x.size, err)  # fmt: skip

    # Softmax over rows: 8 bytes an element.
    shape = (2**14, 1024) if quick else (2**16, 1024)
    x = g.standard_normal(shape, dtype=cp.float32) * 3
    ref = reference.softmax(backend.to_device(x[ref_rows], "cpu"))
    add("softmax", "forward", "cupy", "CuPy generic: max, subtract, exp, sum, divide", shape,
        generic(lambda: F.softmax(Tensor(x), dim=-1)), 8 * x.size, None)  # fmt: skip
    labels = {1: "one thread per row", 2: "one block per row, shared-memory tree",
              3: "one warp per row, online softmax, shuffles",
              4: "one warp per row held in registers, float4"}  # fmt: skip
    for v, label in labels.items():
        err = _rel_error(ops.softmax_forward(x, v)[ref_rows], ref)
        add("softmax", "forward", f"v{v}", label, shape,
            _time_ms(lambda v=v: ops.softmax_forward(x, v)), 8 * x.size, err)  # fmt: skip

    # LayerNorm: 8 bytes an element forward (+ weights, negligible).
    shape = (2**14, 768) if quick else (2**16, 768)
    x = g.standard_normal(shape, dtype=cp.float32)
    w = g.standard_normal(shape[1], dtype=cp.float32)
    b = g.standard_normal(shape[1], dtype=cp.float32)
    r = g.standard_normal(shape, dtype=cp.float32)
    ref = reference.layer_norm(backend.to_device(x[ref_rows], "cpu"), w.get(), b.get())[0]
    add("layernorm", "forward", "cupy", "CuPy generic (lmcore's NumPy code on CuPy)", shape,
        generic(lambda: F.layer_norm(Tensor(x), (shape[1],), Tensor(w), Tensor(b))),
        8 * x.size, None)  # fmt: skip
    labels = {1: "one thread per row", 2: "one warp per row, shuffles",
              3: "one warp per row held in registers, float4",
              4: "v3 on persistent warps, w and b in registers, next row loaded ahead"}  # fmt: skip
    for v, label in labels.items():
        err = _rel_error(ops.layer_norm_forward(x, w, b, 1e-5, v)[0][ref_rows], ref)
        add("layernorm", "forward", f"v{v}", label, shape,
            _time_ms(lambda v=v: ops.layer_norm_forward(x, w, b, 1e-5, v)), 8 * x.size, err)  # fmt: skip
    add("layernorm", "residual + forward", "cupy", "CuPy: add, then LayerNorm", shape,
        generic(lambda: F.layer_norm(Tensor(x) + Tensor(r), (shape[1],), Tensor(w), Tensor(b))),
        16 * x.size, None)  # fmt: skip
    ref = reference.layer_norm((x + r)[ref_rows].get(), w.get(), b.get())[0]
    labels = {1: "add and normalize in one pass", 2: "one pass, rows in registers, persistent"}
    for v, label in labels.items():
        err = _rel_error(ops.residual_layer_norm_forward(x, r, w, b, 1e-5, v)[1][ref_rows], ref)
        add("layernorm", "residual + forward", f"fused v{v}", label, shape,
            _time_ms(lambda v=v: ops.residual_layer_norm_forward(x, r, w, b, 1e-5, v)),
            16 * x.size, err)  # fmt: skip
    dy = g.standard_normal(shape, dtype=cp.float32)
    _, mean, rstd = ops.layer_norm_forward(x, w, b, 1e-5)
    dx_ref = reference.layer_norm_backward(x[ref_rows].get(), w.get(), dy[ref_rows].get())[0]
    labels = {1: "warp per row for dx, column partial sums for dw, db",
              2: "one pass: rows in registers, dw, db summed per warp",
              3: "v2 on the blocks the GPU holds at once, next row loaded ahead"}  # fmt: skip
    for v, label in labels.items():
        err = _rel_error(
            ops.layer_norm_backward(dy, x, w, mean, rstd, version=v)[0][ref_rows], dx_ref
        )
        add("layernorm", "backward", f"v{v}", label, shape,
            _time_ms(lambda v=v: ops.layer_norm_backward(dy, x, w, mean, rstd, version=v)),
            12 * x.size, err)  # fmt: skip

    # The attention weights of the training shape: scale, causal mask and softmax fused.
    shape = (16, 6, 256, 256) if quick else (64, 6, 256, 256)
    s = g.standard_normal(shape, dtype=cp.float32)
    ref = reference.softmax(s[0, 0].get(), 0.125, causal=True)
    for v, label in ((1, "online softmax, one warp per row"), (2, "row in registers, float4")):
        err = _rel_error(ops.attention_softmax_forward(s, 0.125, True, version=v)[0, 0], ref)
        add("attention_softmax", "forward", f"v{v}", label, shape,
            _time_ms(lambda v=v: ops.attention_softmax_forward(s, 0.125, True, version=v)),
            8 * s.size, err)  # fmt: skip

    # Cross-entropy over GPT-2's vocabulary: reads the logits once forward, read + write back.
    shape = (1024, 50257) if quick else (8192, 50257)
    logits = g.standard_normal(shape, dtype=cp.float32)
    targets = g.integers(0, shape[1], shape[0]).astype(cp.int64)
    ref = reference.cross_entropy(logits[:64].get(), targets[:64].get())
    add("cross_entropy", "forward", "cupy", "CuPy generic (max, exp, sum, log, gather)", shape,
        generic(lambda: F.cross_entropy(Tensor(logits), targets, reduction="none")),
        4 * logits.size, None)  # fmt: skip
    labels = {1: "one pass, online softmax (merge: two exps an element), lse kept",
              2: "one pass, online softmax (one exp an element), lse kept",
              3: "v2 with float4 loads, four in flight a thread"}  # fmt: skip
    for v, label in labels.items():
        err = _rel_error(ops.cross_entropy_forward(logits, targets, version=v)[0][:64], ref)
        add("cross_entropy", "forward", f"v{v}", label, shape,
            _time_ms(lambda v=v: ops.cross_entropy_forward(logits, targets, version=v)),
            4 * logits.size, err)  # fmt: skip
    _, lse = ops.cross_entropy_forward(logits, targets)
    weight = cp.full(1, 1 / shape[0], cp.float32)
    ref = reference.cross_entropy_backward(logits[:64].get(), targets[:64].get(), 1 / shape[0])
    labels = {1: "exp(x - lse) - onehot, written once", 2: "v1 with float4 loads and stores"}
    for v, label in labels.items():
        grad = ops.cross_entropy_backward(logits, targets, lse, weight, version=v)
        err = _rel_error(grad[:64], ref)
        add("cross_entropy", "backward", f"v{v}", label, shape,
            _time_ms(lambda v=v: ops.cross_entropy_backward(logits, targets, lse, weight,
                                                            version=v)),
            8 * logits.size, err)  # fmt: skip

    rows += _adamw_rows(quick, add)
    _quantized_rows(quick, add)
    rows += _matmul_rows(quick, ceilings)
    return rows


def _adamw_rows(quick: bool, add) -> list:
    """AdamW over GPT-2 small's parameter shapes (124 M parameters): 28 bytes each."""
    import cupy as cp

    from lmcore.cuda import ops
    from lmcore.models.gpt import GPT, GPTConfig

    layers = 2 if quick else 12
    model = GPT(GPTConfig(50257, 1024, layers, 12, 768), device="cuda")
    params = list(model.parameters())
    n = sum(p.size for p in params)
    g = cp.random.default_rng(1)
    for p in params:
        p._grad = g.standard_normal(p.shape, dtype=cp.float32) * 1e-3
    opt = model.configure_optimizer(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95))
    shape = f"{len(params)} tensors, {n / 1e6:.0f} M parameters"
    with cuda.use_kernels(False):
        ms = _time_ms(opt.step, repeat=10)
    add("adamw", "step", "cupy", "per tensor, about ten CuPy operations each", shape, ms,
        28 * n, None)  # fmt: skip
    states = [(p, opt.state[p]) for p in params]

    def per_tensor():
        for p, s in states:
            ops.adamw_tensor(p.data, p._grad, s["exp_avg"], s["exp_avg_sq"], 10, 1e-3,
                             (0.9, 0.95), 1e-8, 0.1)  # fmt: skip

    add("adamw", "step", "v1", "one launch per tensor", shape, _time_ms(per_tensor, repeat=10),
        28 * n, None)  # fmt: skip
    tensors = [(p.data, p._grad, s["exp_avg"], s["exp_avg_sq"], 1e-3, 0.1) for p, s in states]
    for v, label in ((2, "one launch for all tensors"), (3, "one launch for all, float4"),
                     (4, "v3 with two float4 of each array in flight")):  # fmt: skip
        ms = _time_ms(lambda v=v: ops.adamw_multi_tensor(tensors, 10, (0.9, 0.95), 1e-8, v),
                      repeat=10)  # fmt: skip
        add("adamw", "step", f"v{v}", label, shape, ms, 28 * n, None)
    # Correctness of one step against the float64 reference, on a fresh small tensor.
    p = g.standard_normal(1000, dtype=cp.float32)
    grad, m, v = (g.standard_normal(1000, dtype=cp.float32) for _ in range(3))
    v = cp.abs(v)
    ref = reference.adamw(p.get(), grad.get(), m.get(), v.get(), 3, 1e-2, (0.9, 0.95), 1e-8, 0.1)
    ops.adamw_multi_tensor([(p, grad, m, v, 1e-2, 0.1)], 3, (0.9, 0.95), 1e-8)
    add_error = _rel_error(p, ref[0])
    return [{"family": "adamw", "op": "check", "version": "v2", "label": "one step vs float64",
             "shape": "(1000,)", "ms": None, "gb_s": None, "fraction_of_copy": None,
             "tflop_s": None, "max_rel_error": add_error}]  # fmt: skip


def _quantized_rows(quick: bool, add) -> None:
    """One decode step's product x (1, in) @ W^T with W stored in float32, int8 (a scale a
    row) and 4 bits (a scale per 32 inputs): the bytes read are the weights', so each
    format's floor is its bytes over the bandwidth. W is larger than the GPU's L2 cache."""
    import cupy as cp

    from lmcore.autograd import Tensor, no_grad
    from lmcore.cuda import ops
    from lmcore.nn import Linear
    from lmcore.nn.quantized import QuantizedLinear

    out, width = (4096, 4096) if quick else (16384, 8192)
    linear = Linear(width, out, bias=False, device="cuda")
    x = cp.random.default_rng(2).standard_normal((1, width), dtype=cp.float32)
    shape = (1, width, out)
    moved = 4 * (width + out)  # x read, y written
    add("quantized", "matvec", "cuBLAS", "float32 weights, cuBLAS", shape,
        _time_ms(lambda: x @ linear.weight.data.T), 4 * out * width + moved, None)  # fmt: skip
    ref_rows = slice(0, 256)
    for bits, group in ((8, None), (4, 32)):
        layer = QuantizedLinear.from_linear(linear, bits, group)
        codes, scales = layer.codes.data, layer.scales.data
        nbytes = codes.nbytes + scales.nbytes + moved
        ref = reference.quantized_matmul(x.get(), codes[ref_rows].get(), scales[ref_rows].get(),
                                         bits)  # fmt: skip
        with cuda.use_kernels(False), no_grad():
            ms = _time_ms(lambda layer=layer: layer(Tensor(x)))
        add("quantized", f"int{bits}", "cupy", "dequantize blocks to float32, then cuBLAS",
            shape, ms, nbytes, None)  # fmt: skip
        labels = {1: "dequantized in registers, a warp per row, one code a load",
                  2: "v1 with 16 bytes of codes a load, x as float4"}  # fmt: skip
        for v, label in labels.items():
            err = _rel_error(ops.quantized_matmul(x, codes, scales, bits, v)[:, ref_rows], ref)
            ms = _time_ms(
                lambda v=v, c=codes, s=scales, b=bits: ops.quantized_matmul(x, c, s, b, v)
            )
            add("quantized", f"int{bits}", f"v{v}", label, shape, ms, nbytes, err)


def _matmul_rows(quick: bool, ceilings: dict) -> list[dict]:
    import cupy as cp

    from lmcore.cuda import ops

    size = 1024 if quick else 4096
    g = cp.random.default_rng(2)
    a = g.standard_normal((size, size), dtype=cp.float32)
    b = g.standard_normal((size, size), dtype=cp.float32)
    flops = 2 * size**3
    ref = reference.matmul(a[:64].get(), b.get())
    out = []

    def row(version, label, ms, err):
        tflop_s = flops / ms / 1e9
        out.append(
            {
                "family": "matmul",
                "op": "forward",
                "version": version,
                "label": label,
                "shape": f"({size}, {size}) @ ({size}, {size})",
                "ms": round(ms, 4),
                "gb_s": None,
                "fraction_of_copy": None,
                "tflop_s": round(tflop_s, 2),
                "fraction_of_cublas": round(tflop_s / ceilings["fp32_matmul_tflop_s"], 3),
                "max_rel_error": err,
            }
        )

    labels = {1: "one thread per output", 2: "32 x 32 shared-memory tiles",
              3: "128 x 128 tiles, 8 x 8 outputs per thread"}  # fmt: skip
    for v, label in labels.items():
        err = _rel_error(ops.matmul(a, b, v)[:64], ref)
        row(f"v{v}", label, _time_ms(lambda v=v: ops.matmul(a, b, v), repeat=5), err)
    cuda.allow_tf32(False)
    row(
        "cuBLAS", "cuBLAS float32", _time_ms(lambda: a @ b, repeat=5), _rel_error((a @ b)[:64], ref)
    )
    cuda.allow_tf32(True)
    row("cuBLAS TF32", "cuBLAS, TF32 tensor cores", _time_ms(lambda: a @ b, repeat=5),
        _rel_error((a @ b)[:64], ref))  # fmt: skip
    cuda.allow_tf32(False)
    return out


# -- attention -------------------------------------------------------------------------


def _attention_rows(quick: bool) -> list[dict]:
    """Forward + backward of causal attention, B 8, H 12, D 64, as T grows: time and the
    memory pool's high-water mark, for the flash kernels and the unfused path."""
    import cupy as cp

    from lmcore.autograd import Tensor
    from lmcore.functional import scaled_dot_product_attention

    pool = cp.get_default_memory_pool()  # emptied between lengths
    g = cp.random.default_rng(3)
    batch, heads, width = (2, 4, 64) if quick else (8, 12, 64)
    lengths = (256, 512, 1024) if quick else (256, 512, 1024, 2048, 4096)
    rows = []
    for length in lengths:
        shape = (batch, heads, length, width)
        arrays = [g.standard_normal(shape, dtype=cp.float32) for _ in range(4)]
        for path, threshold, kernels in (
            ("flash", 0, True),
            ("unfused, softmax kernel", 10**9, True),
            ("generic CuPy", 10**9, False),
        ):

            def step(threshold=threshold, kernels=kernels, arrays=arrays):
                saved = cuda.FLASH_ATTENTION_MIN_KEYS
                cuda.FLASH_ATTENTION_MIN_KEYS = threshold
                try:
                    with cuda.use_kernels(kernels):
                        q, k, v = (Tensor(a, requires_grad=True) for a in arrays[:3])
                        out = scaled_dot_product_attention(q, k, v, causal=True)
                        out.backward(arrays[3])
                finally:
                    cuda.FLASH_ATTENTION_MIN_KEYS = saved

            step()
            with _PeakMemory() as memory:
                step()
            ms = _time_ms(step, repeat=5, warmup=1)
            rows.append({"T": length, "path": path, "ms": round(ms, 3), "peak_mib": memory.mib})
        del arrays
        pool.free_all_blocks()
    return rows


# -- the training step -----------------------------------------------------------------


def _training_rows(quick: bool, torch) -> tuple[list[dict], dict]:
    import cupy as cp

    from lmcore.bench.gpt import _torch_adamw, _torch_gpt
    from lmcore.models.gpt import GPT, GPTConfig
    from lmcore.rng import manual_seed

    shape = dict(TRAIN_SHAPE)
    batch, vocab = shape.pop("batch"), shape.pop("vocab")
    if quick:
        shape.update(n_layer=2, block_size=64)
        batch = 8
    config = GPTConfig(vocab_size=vocab, dropout=0.0, **shape)
    rng = np.random.default_rng(0)
    host = [
        tuple(rng.integers(0, vocab, (batch, config.block_size)) for _ in "xy") for _ in range(4)
    ]
    tokens = batch * config.block_size
    steps, warmup = (3, 2) if quick else (20, 5)
    rows = []

    def measure(rung, step, batches, into=rows):
        """Steps per second with the loss read every step (as a training loop that logs
        does), and the host's own time per step: when the two are close, Python, not the
        GPU, sets the pace."""
        first = step(batches[0])
        for i in range(warmup):
            step(batches[i % 4])
        cp.cuda.Device().synchronize()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for i in range(steps):
            step(batches[i % 4])
        stop.record()
        stop.synchronize()
        ms = cp.cuda.get_elapsed_time(start, stop) / steps
        begin = time.perf_counter()
        for i in range(steps):
            step(batches[i % 4], read_loss=False)
        host_ms = (time.perf_counter() - begin) / steps * 1e3
        cp.cuda.Device().synchronize()
        torch_sync = (
            torch.cuda.synchronize if torch is not None and torch.cuda.is_available() else None
        )
        if torch_sync:
            torch_sync()
        into.append({"rung": rung, "tokens_per_s": round(tokens / ms * 1e3),
                     "ms_per_step": round(ms, 2), "host_ms_per_step": round(host_ms, 2),
                     "first_loss": round(first, 4)})  # fmt: skip

    batches = [tuple(cp.asarray(a) for a in pair) for pair in host]
    for rung, tf32, kernels in (
        ("generic CuPy, float32", False, False),
        ("+ TF32 matrix products", True, False),
        ("+ lmcore kernels", True, True),
    ):
        manual_seed(0)
        model = GPT(config, device="cuda")
        opt = model.configure_optimizer(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.99))

        def step(batch, model=model, opt=opt, read_loss=True):
            _, loss = model(*batch)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return float(loss.item()) if read_loss else None

        cuda.allow_tf32(tf32)
        with cuda.use_kernels(kernels):
            measure(rung, step, batches)
            with _PeakMemory() as memory:
                step(batches[0])
            rows[-1]["peak_mib"] = memory.mib
            if kernels and not quick:
                _profile_host(step, batches)
        del model, opt
    rows.append(_captured_rung(config, batches, measure))
    cuda.allow_tf32(False)

    if torch is not None and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch_batches = [tuple(torch.from_numpy(a).cuda() for a in pair) for pair in host]
        manual_seed(0)
        initial = GPT(config, device="cpu").state_dict()  # the lmcore rungs' first weights
        for rung, dtype in (
            ("PyTorch eager, TF32", None),
            ("PyTorch eager, bf16 autocast", torch.bfloat16),
        ):
            model = _torch_gpt(torch, config)
            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in initial.items()})
            model = model.cuda()
            opt = _torch_adamw(torch, model)

            def step(batch, model=model, opt=opt, dtype=dtype, read_loss=True):
                idx, targets = batch
                with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                    logits = model(idx)
                    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(),
                                                             targets.flatten())  # fmt: skip
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return float(loss.item()) if read_loss else None

            measure(rung, step, torch_batches)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step(torch_batches[0])
            rows[-1]["peak_mib"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
            del model, opt
        torch.cuda.empty_cache()
    return rows, _loss_curve(quick)


def _captured_rung(config, batches, measure) -> dict | None:
    """The kernels rung with forward and backward replayed from a CUDA graph (the
    optimizer outside it). A failed capture is recorded as the rung's error, not hidden."""
    from lmcore.cuda.graphs import CapturedStep
    from lmcore.models.gpt import GPT
    from lmcore.rng import manual_seed

    rung = "+ CUDA graph of forward and backward"
    manual_seed(0)
    model = GPT(config, device="cuda")
    opt = model.configure_optimizer(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.99))
    cuda.allow_tf32(True)
    try:
        with cuda.use_kernels(True):
            captured = CapturedStep(model, lambda m, x, y: m(x, y)[1], *batches[0])

            def step(batch, read_loss=True):
                loss = captured(*batch)
                opt.step()
                opt.zero_grad()
                return float(loss) if read_loss else None

            rows = []
            measure(rung, step, batches, into=rows)
            return rows[0]
    except Exception as error:  # the record says why, and the run goes on
        return {"rung": rung, "error": f"{type(error).__name__}: {error}"[:600]}


def _profile_host(step, batches) -> None:
    """Print where the host's time goes in a few training steps (cProfile, own time)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for i in range(5):
        step(batches[i % 4])
    profile.disable()
    print("Host time of 5 steps on the kernels, by function (own time):")
    pstats.Stats(profile).sort_stats("tottime").print_stats(18)


def _loss_curve(quick: bool) -> dict:
    """The first steps of one training run on the GPU with the kernels and on the CPU:
    same seed, same batches of Shakespeare's characters, float32 (no TF32) on both."""
    from lmcore.models.gpt import GPT, GPTConfig
    from lmcore.rng import manual_seed

    rng = np.random.default_rng(1)
    steps = 5 if quick else 20
    plays = data.shakespeare("train")[:200_000]
    text = np.array(CharTokenizer(plays).encode(plays))
    config = GPTConfig(vocab_size=int(text.max()) + 1, block_size=64,
                       n_layer=2 if quick else 4, n_head=4, n_embd=128, dropout=0.0)  # fmt: skip
    batches = []
    for _ in range(steps):
        start = rng.integers(0, len(text) - 65, 8)
        chunk = np.stack([text[s : s + 65] for s in start])
        batches.append((chunk[:, :-1], chunk[:, 1:]))
    curves = {}
    for device in ("cuda", "cpu"):
        manual_seed(0)
        model = GPT(config, device="cpu")  # the same initial weights on both devices
        model.to(device)
        opt = model.configure_optimizer(weight_decay=0.1, lr=3e-3, betas=(0.9, 0.99))
        losses = []
        for x, y in batches:
            x, y = backend.to_device(x, device), backend.to_device(y, device)
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(round(float(loss.item()), 6))
        curves["gpu_kernels" if device == "cuda" else "cpu"] = losses
    return {"steps": list(range(steps)), **curves}


# -- the run ---------------------------------------------------------------------------


def _print(record: dict) -> None:
    print_table(record["kernels"], title="Kernels (median of CUDA-event timings)")
    print_table(record["attention"], title="Causal attention, forward + backward")
    print_table(record["training"], title="GPT training step (nanoGPT's Shakespeare shape)")


def run(quick: bool = False, write: str | Path | None = None) -> dict:
    """Measure everything on the GPU, print the tables, return the record (and write it
    as JSON to ``write``). Without a GPU, print where the recorded run is and return it."""
    if not backend.gpu_available():
        record = load_results()
        print(f"No GPU here; the recorded run: {record['device']['name']}, {record['date']}, "
              f"`{record['command']}` (lmcore.bench.gpu.load_results()).\n")  # fmt: skip
        _print(record)
        return record
    torch = None
    if importlib.util.find_spec("torch"):
        import torch
    ceilings = _ceilings(quick)
    record = {
        "device": _device(),
        "versions": _versions(torch),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bench_revision": _revision(),
        "command": "lmcore bench gpu"
        + (" --quick" if quick else "")
        + (f" --write {write}" if write else ""),
        "ceilings": ceilings,
    }
    print(f"{record['device']['name']}: copy {ceilings['copy_gb_s']:,.0f} GB/s, "
          f"float32 {ceilings['fp32_matmul_tflop_s']} TFLOP/s, "
          f"TF32 {ceilings['tf32_matmul_tflop_s']} TFLOP/s\n")  # fmt: skip
    record["kernels"] = _kernel_rows(quick, ceilings)
    record["attention"] = _attention_rows(quick)
    record["training"], record["loss_curve"] = _training_rows(quick, torch)
    _print(record)
    if write:
        Path(write).write_text(json.dumps(record, indent=1) + "\n")
    return record
