# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # GPUs and CUDA kernels
#
# Every model so far ran on NumPy, and on a machine with an NVIDIA GPU the same code ran on
# CuPy {cite}`okuta2017`, whose arrays live in the GPU's memory and whose functions run there.
# That moves the arithmetic onto the GPU's thousands of arithmetic units, and still leaves a
# large speed-up on the table: CuPy's generic functions each make one pass over memory, so an
# operation written as ten array expressions reads and writes its data ten times, and launches
# ten programs on the GPU to do it. This chapter opens the GPU up. We look at how it runs a
# program and where its time goes, and then read, version by version, the CUDA kernels that
# `lmcore` uses in place of the generic functions: the same arithmetic, moving fewer bytes, in
# fewer launches.
#
# The chapter runs on any machine. With a GPU it measures everything live; without one it
# reads the measurements of a recorded GPU run, says where and when they were made, and still
# checks every kernel's mathematics against `lmcore`'s own autograd, compiles the CUDA
# source to the GPU's assembly language with NVIDIA's compiler library, and runs the
# algorithms (online softmax, attention without the $T \times T$ matrix, loss scaling) in
# NumPy.
#
# **In this chapter you will**
#
# - learn the GPU's execution model (grids, blocks, warps, streaming multiprocessors) and its
#   memory hierarchy, and why a kernel's speed is set by the bytes it moves far more often
#   than by the arithmetic it does;
# - place kernels on a roofline drawn from the device's measured copy bandwidth and matrix
#   throughput;
# - write GPU code three ways with CuPy: `ElementwiseKernel`, `ReductionKernel` and
#   `RawKernel`;
# - read `lmcore`'s kernels from naive to fast, each checked against a NumPy reference: GELU
#   (wide loads), softmax (coalescing, warp shuffles, the online softmax), LayerNorm (forward,
#   backward, fused with the residual add), fused cross-entropy, multi-tensor AdamW, and a
#   tiled matrix product measured against cuBLAS;
# - derive attention without the $T \times T$ matrix (FlashAttention's idea), implement it in
#   NumPy, check it, and measure what it saves;
# - see how the kernels plug into `lmcore`'s autograd and what they do to a whole training
#   step, what kernel launches cost, and what CUDA graphs would buy;
# - see in numbers why half precision needs loss scaling and float32 master weights.

# %% tags=["hide-cell"]
# Set-up: install lmcore when it is missing (on Colab, say), then name the profile and device.
import importlib.util
import subprocess
import sys

REPOSITORY = "https://github.com/lmcore-book/language-models-from-scratch"
if importlib.util.find_spec("lmcore") is None:
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", f"lmcore @ git+{REPOSITORY}"]
    )

# %%
import math
import re
import time
import tracemalloc
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, Rectangle

import lmcore
from lmcore import backend, config, cuda, optim
from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.bench.common import print_table
from lmcore.cuda import loader, nvrtc, reference
from lmcore.functional import ScaledDotProductAttention, scaled_dot_product_attention
from lmcore.models import GPT, GPTConfig
from lmcore.nn.module import Parameter
from lmcore.notebook import show, show_cuda
from lmcore.rng import manual_seed

PROFILE = config.profile()
DEVICE = backend.device()
gpu = backend.gpu_available()  # CuPy installed and a GPU present: measure live
lmcore.notebook.setup()


def ptx_functions(family: str, arch: str = "compute_90") -> dict[str, str]:
    """The PTX of each kernel of a family, compiled here by NVRTC (no GPU needed)."""
    return nvrtc.ptx_entries(nvrtc.compile_ptx(loader.source(family), arch, f"{family}.cu"))


def instructions(ptx: str) -> Counter:
    """How many times each memory, shuffle, barrier and FMA instruction appears in PTX."""
    pattern = r"^\s+((?:ld|st)\.(?:global|shared)[\w.]*|shfl\.sync[\w.]*|bar\.sync|fma\.rn\.f32)"
    return Counter(re.findall(pattern, ptx, re.M))


print("NVRTC (compiles CUDA C++ without a GPU):", nvrtc.available())

# %% [markdown]
# ## Where the measurements come from
#
# The GPU numbers of this chapter come from `lmcore bench gpu` (`lmcore.bench.gpu`),
# which measures the device's ceilings (copy bandwidth, matrix throughput), every kernel
# version beside CuPy's generic path, attention as the context grows, and the training step
# of nanoGPT's Shakespeare model as a ladder of optimisations. On a GPU the next cell runs it
# now; elsewhere it loads the record of a real run that ships with the package. Either way the
# record says where it was made, and every statement below about speed is read from it:
# "this run" when measured here, "the recorded run" otherwise.

# %%
if gpu:
    from lmcore.bench import gpu as gpu_bench

    results = gpu_bench.run(quick=PROFILE == "quick", write=None)
    SOURCE = "this run"
else:
    from lmcore.bench.gpu import load_results

    results = load_results()
    SOURCE = "the recorded run"
# Claims about speed are asserted on the recorded run and on a full live run; a live run in
# the quick profile uses small sizes, where fixed costs blur the comparisons.
STRICT = not (gpu and PROFILE == "quick")

device, versions = results["device"], results.get("versions", {})
print(f"GPU measurements: {SOURCE}")
print(f"  device   {device['name']}, compute capability {device['compute_capability']}, "
      f"{device['multiprocessors']} multiprocessors, {device['memory_gib']} GiB")  # fmt: skip
print(f"  software driver {device.get('driver')}, CUDA runtime {device.get('cuda_runtime')}, "
      + ", ".join(f"{k} {v}" for k, v in versions.items() if v))  # fmt: skip
print(f"  date     {results.get('date')}")
print(f"  command  {results.get('command')}")
if results.get("bench_revision"):
    print(f"  lmcore   {results['bench_revision']}")
ceilings = results["ceilings"]
print(f"  ceilings copy {ceilings['copy_gb_s']:,.0f} GB/s (read + write), "
      f"float32 matrix product {ceilings['fp32_matmul_tflop_s']} TFLOP/s, "
      f"TF32 {ceilings['tf32_matmul_tflop_s']} TFLOP/s")  # fmt: skip


def kernel_rows(family: str, op: str | None = None) -> list[dict]:
    """The timed rows of one kernel family (and operation) in the results."""
    return [
        r
        for r in results.get("kernels", [])
        if r["family"] == family and (op is None or r["op"] == op) and r.get("ms") is not None
    ]


def timing(family: str, op: str, version: str) -> float | None:
    """Milliseconds of one kernel version, or None when the results lack it."""
    found = [r["ms"] for r in kernel_rows(family, op) if r["version"] == version]
    return found[0] if found else None


def best(family: str, op: str) -> str | None:
    """The fastest of lmcore's own versions of a kernel (not CuPy's, not cuBLAS)."""
    ours = [r for r in kernel_rows(family, op) if r["version"] not in ("cupy", "cuBLAS")]
    ours = [r for r in ours if "TF32" not in r["version"]]
    return min(ours, key=lambda r: r["ms"])["version"] if ours else None


def speedup(family: str, op: str, slow: str, fast: str) -> float | None:
    """How many times faster version ``fast`` ran than version ``slow``."""
    a, b = timing(family, op, slow), timing(family, op, fast)
    return None if a is None or b is None else a / b


def kernel_table(family: str) -> None:
    """Print a family's timings as a table."""
    table = []
    for r in kernel_rows(family):
        row = {"op": r["op"], "version": r["version"], "what": r["label"], "ms": r["ms"]}
        if r.get("gb_s") is not None:
            row["GB/s"], row["of copy"] = r["gb_s"], f"{r['fraction_of_copy']:.0%}"
        if r.get("tflop_s") is not None:
            row["TFLOP/s"] = r["tflop_s"]
        error = r.get("max_rel_error")
        row["error"] = "-" if error is None else f"{error:.0e}"
        table.append(row)
    shapes = sorted({r["shape"] for r in kernel_rows(family)})
    print_table(table, title=f"{family}, shape {', '.join(shapes)} ({SOURCE})")


# %% [markdown]
# ## How a GPU runs a program
#
# A CPU has a few cores, each built to finish one thread's instructions as soon as possible:
# large caches, branch prediction, out-of-order execution. A GPU spends its transistors the
# other way: on many simple arithmetic units and on enough threads to keep them busy. Its
# program is a **kernel**, a function that every one of thousands of threads runs, each on
# its own part of the data. The CPU *launches* the kernel, choosing how many threads run it,
# and goes on with its own work: a launch only puts the kernel in a queue.
#
# The threads are organized in two levels {cite}`nvidia2024cuda`. A **thread block** is a
# group of up to 1024 threads that run on the same processor, can share a fast scratch
# memory and can wait for each other at a barrier (`__syncthreads()`). The **grid** is all
# the blocks of one launch; blocks cannot wait for each other, so they may run in any order
# and on any processor, which is what lets the same program use a small GPU or a large one.
# Each thread finds its data from its indices, `blockIdx.x * blockDim.x + threadIdx.x`.
#
# The processors are the **streaming multiprocessors** (SMs); the measured device has the
# number printed above. Each SM holds several blocks at once and runs their threads in
# groups of 32, the **warps**: the 32 threads of a warp execute the same instruction at the
# same time, each on its own registers. When the threads of a warp take different sides of a
# branch, the warp runs both sides one after the other with half its threads idle. An SM
# keeps dozens of warps resident (64 on compute capability 9.0) and, every cycle, issues an
# instruction from one that is ready: while one warp waits hundreds of cycles for memory,
# others compute. That is how a GPU hides memory latency, and why a kernel needs many more
# threads than the GPU has arithmetic units.
#
# Memory comes in levels, each smaller and faster than the one below it:
#
# - **registers**, private to a thread (64 K 32-bit registers per SM, shared out among its
#   resident threads);
# - **shared memory**, on the SM, visible to the threads of one block (up to 228 KB per SM on
#   compute capability 9.0, in the same storage as the L1 cache);
# - the **L2 cache**, shared by all SMs;
# - **global memory**, the GPU's DRAM (HBM on data-centre GPUs): gigabytes, visible to every
#   thread and to the CPU through copies, and much slower than the levels above.
#
# A kernel reads its inputs from global memory and writes its outputs there. Everything in
# this chapter is about how to use the levels above it so that global memory is touched as
# little as possible.

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.1, 1]})
# Left: a launch of a 4 x 2 grid of blocks; block (1, 0) opened into its warps of 32 threads.
for bx in range(4):
    for by in range(2):
        opened = (bx, by) == (1, 0)
        ax1.add_patch(Rectangle((bx * 1.25, 3.1 + by * 1.05), 1.1, 0.9,
                                fc="tab:orange" if opened else "tab:blue", alpha=0.6, ec="k"))  # fmt: skip
        ax1.text(bx * 1.25 + 0.55, 3.55 + by * 1.05, f"block\n({bx}, {by})", ha="center",
                 va="center", fontsize=7)  # fmt: skip
ax1.text(2.45, 5.35, "grid: all the blocks of one launch", ha="center", fontsize=9)
for w in range(4):
    y = 1.9 - 0.55 * w
    for t in range(32):
        ax1.add_patch(Rectangle((0.3 + t * 0.145, y), 0.12, 0.4, fc="tab:orange", alpha=0.6,
                                ec="none"))  # fmt: skip
    ax1.text(0.2, y + 0.2, f"warp {w}", ha="right", va="center", fontsize=7)
ax1.add_patch(FancyArrowPatch((1.8, 3.05), (2.6, 2.4), arrowstyle="->", mutation_scale=12))
ax1.text(2.65, 2.62, "block (1, 0): 128 threads = 4 warps of 32", fontsize=8)
ax1.text(2.45, 0.05, "one warp = 32 threads that run the same instruction together",
         ha="center", fontsize=8)  # fmt: skip
ax1.set(xlim=(-0.9, 5.2), ylim=(-0.1, 5.6), title="threads: grid, blocks, warps")
ax1.axis("off")
# Right: the memory levels, from the thread's registers down to global memory.
levels = [
    ("registers", "seen by one thread", "64 K x 32-bit per SM"),
    ("shared memory / L1 cache", "seen by one block", "up to 228 KB per SM (c.c. 9.0)"),
    ("L2 cache", "seen by all SMs", "on the chip"),
    ("global memory (HBM)", "seen by all threads; the CPU copies to it",
     f"{device['memory_gib']} GiB, copy {ceilings['copy_gb_s']:,.0f} GB/s (measured)"),
]  # fmt: skip
for i, (name, who, size) in enumerate(levels):
    width, y = 3.6 + 1.1 * i, 3.15 - 1.05 * i
    ax2.add_patch(Rectangle((-width / 2, y), width, 0.9, fc=plt.cm.Blues(0.2 + 0.15 * i), ec="k"))
    ax2.text(0, y + 0.66, name, ha="center", va="center", fontsize=9, weight="bold")
    ax2.text(0, y + 0.4, who, ha="center", va="center", fontsize=7.5)
    ax2.text(0, y + 0.16, size, ha="center", va="center", fontsize=7.5)
ax2.annotate("", xy=(4.6, 4.0), xytext=(4.6, 0.0), arrowprops={"arrowstyle": "->"})
ax2.text(4.75, 2.0, "smaller,\nfaster,\ncloser to\nthe threads", fontsize=8, va="center")
ax2.set(xlim=(-4.8, 6.3), ylim=(-0.1, 4.2), title="memory: who sees it, how big")
ax2.axis("off")
fig.tight_layout()

# %% [markdown]
# On the left, a launch of eight blocks of 128 threads: the GPU hands each block to an SM,
# where it runs as four warps. On the right, the memory a thread can reach, from its own
# registers to the global memory that every thread and the CPU share. The capacities are
# those of compute capability 9.0 (NVIDIA's Hopper GPUs) in the CUDA programming guide
# {cite}`nvidia2024cuda`, and the bandwidth is the one measured on the device of the record.
#
# ## The two numbers of a kernel
#
# Any kernel does some arithmetic, $F$ floating-point operations, and moves some data, $Q$
# bytes between global memory and the chip. With a peak arithmetic rate $\pi$ (FLOP/s) and a
# memory bandwidth $\beta$ (bytes/s), it cannot finish faster than either allows:
#
# $$
# t \;\ge\; \max\!\left(\frac{F}{\pi},\; \frac{Q}{\beta}\right),
# \qquad\text{so its rate}\qquad
# \frac{F}{t} \;\le\; \min(\pi,\; I \beta), \qquad I = \frac{F}{Q}.
# $$
#
# $I$, flops per byte, is the kernel's **arithmetic intensity**. Plotting the bound
# $\min(\pi, I\beta)$ against $I$ on log axes gives the **roofline** {cite}`williams2009`: a
# slope where the kernel is **memory-bound** (it waits for bytes), a flat roof where it is
# compute-bound, and a ridge between them at $I^* = \pi / \beta$. Left of the ridge, doing
# less arithmetic does not help at all; the only ways to go faster are to move fewer bytes
# or to move them at a larger share of the bandwidth.
#
# Let us count. GELU reads one float32 (4 bytes) and writes one per element, and does about
# nine operations on it (a cube, a few multiplications and additions, a tanh): $I \approx 9/8$.
# A softmax or a LayerNorm reads and writes each element once and does a handful of
# operations on it. A matrix product of two $n \times n$ matrices does $2n^3$ operations on
# $3 n^2$ floats, so $I = n/6$, which grows with $n$. The table below counts each kernel family
# of this chapter (a transcendental function counted as one operation; these are the
# operations of the mathematics, not of any one implementation) and puts its intensity beside
# the ridge point of the measured device. For $\pi$ and $\beta$ we take what the device was
# measured to reach rather than its data sheet: cuBLAS's float32 matrix product, and a large
# copy within global memory (bytes read plus bytes written).

# %%
# (flops, bytes) per element of the memory-bound kernels, float32, each input read once and
# each output written once.
COSTS = {
    ("gelu", "forward"): (9, 8),  # x^3, 3 multiplications, 2 additions, tanh, 2 more
    ("gelu", "backward"): (18, 12),  # the slope (one tanh), times the gradient
    ("softmax", "forward"): (5, 8),  # max, subtract, exp, add, scale by 1/sum
    ("attention_softmax", "forward"): (7, 8),  # the scale and the causal mask, then softmax
    ("layernorm", "forward"): (8, 8),  # mean, variance (3), normalize, scale, shift
    ("layernorm", "residual + forward"): (9, 16),  # the add, then the above; reads 2, writes 2
    ("layernorm", "backward"): (14, 12),  # dx (about 10) and the dw, db sums
    ("cross_entropy", "forward"): (4, 4),  # max, subtract, exp, add; the logits are only read
    ("cross_entropy", "backward"): (4, 8),  # exp(x - lse), minus one-hot, times weight
    ("adamw", "step"): (14, 28),  # reads p, g, m, v; writes p, m, v
}
peak_fp32 = ceilings["fp32_matmul_tflop_s"] * 1e12
bandwidth = ceilings["copy_gb_s"] * 1e9
ridge = peak_fp32 / bandwidth
print(f"ridge point of the measured device: {ridge:.1f} flop/byte (float32 matrix products)")
print(f"{'kernel':32s} {'flop':>5s} {'bytes':>6s} {'intensity':>10s}")
for (family, op), (flops, nbytes) in COSTS.items():
    print(f"{family + ' ' + op:32s} {flops:5d} {nbytes:6d} {flops / nbytes:10.2f}")
for n in (256, 4096):
    print(f"{f'matrix product n = {n}':32s} {'':5s} {'':6s} {n / 6:10.1f}")
assert max(f / b for f, b in COSTS.values()) < ridge / 2  # all of them far left of the ridge
assert ridge < 4096 / 6  # a large matrix product is right of it

# %% [markdown]
# Every kernel of this chapter except the matrix product has an intensity of about one
# flop per byte or less, far left of the ridge (the assert checks it is below half the ridge
# point). They are memory-bound, on any GPU: their best possible time is the time to move
# their bytes once. A large matrix product lies to the right: it can be compute-bound, if its
# kernel reuses each byte it loads enough times.
#
# The same logic says why CuPy's generic functions leave speed on the table. `lmcore`'s GELU,
# written for NumPy, computes $0.5\,x\,(1+\tanh u)$ as a sequence of about nine array
# operations, each of which reads its inputs from global memory and writes its output back:
# nine passes where one would do. A kernel that does the whole formula while the element is
# in a register moves the minimum. This is **kernel fusion**, and most of the kernels below
# are fusions of some kind.
#
# Here is the roofline of the measured device, with each kernel placed by its intensity and
# its measured rate (for the memory-bound kernels, intensity times achieved bandwidth).


# %%
def matmul_intensity(shape: str) -> float | None:
    """flops / minimal bytes of a float32 product written as '(M, K) @ (K, N)'."""
    sizes = [int(s) for s in re.findall(r"\d+", shape)]
    if len(sizes) != 4:
        return None
    m, k, _, n = sizes
    return 2 * m * n * k / (4 * (m * k + k * n + m * n))


points = []  # (family, label, intensity, TFLOP/s, generic?)
for (family, op), (flops, nbytes) in COSTS.items():
    for r in kernel_rows(family, op):
        if r.get("gb_s"):
            rate = flops / nbytes * r["gb_s"] / 1e3  # GB/s x flop/byte = GFLOP/s, in TFLOP/s
            points.append((family, f"{family} {op}", flops / nbytes, rate, r["version"] == "cupy"))
for r in kernel_rows("matmul"):
    intensity = matmul_intensity(r["shape"])
    if intensity and r.get("tflop_s"):
        points.append(("matmul", f"matmul {r['version']}", intensity, r["tflop_s"], False))

fig, ax = plt.subplots(figsize=(7.5, 4.6))
intensities = np.logspace(-1.0, 3.5, 200)
for name, peak, style in (
    ("float32", peak_fp32, "k-"),
    ("TF32 tensor cores", ceilings["tf32_matmul_tflop_s"] * 1e12, "k--"),
):
    ax.loglog(intensities, np.minimum(bandwidth * intensities, peak) / 1e12, style, lw=1,
              label=f"roof: {name}")  # fmt: skip
families = list(dict.fromkeys(p[0] for p in points))
colors = dict(zip(families, plt.cm.tab10.colors))
for family, _, x, y, generic in points:
    ax.loglog(
        x, y, "o", color=colors[family], mfc="none" if generic else colors[family], alpha=0.85
    )
for family in families:
    ax.plot([], [], "o", color=colors[family], label=family)
fastest = {}
for _, label, x, y, generic in points:
    if not generic and y > fastest.get(label, (0, 0))[1]:
        fastest[label] = (x, y)
for label, (x, y) in fastest.items():
    if label.startswith("matmul"):
        ax.annotate(label.removeprefix("matmul "), (x, y), textcoords="offset points",
                    xytext=(6, -9), fontsize=7)  # fmt: skip
ax.axvline(ridge, color="tab:red", lw=0.8, ls=":")
ax.text(ridge * 1.1, 0.06, f"ridge: {ridge:.0f} flop/byte", color="tab:red", fontsize=8)
ax.plot([], [], "o", mfc="none", color="k", label="(hollow: CuPy generic path)")
ax.set(xlabel="arithmetic intensity (flop per byte)", ylabel="TFLOP/s",
       title=f"roofline of the {device['name']} ({SOURCE})", ylim=(0.03, None))  # fmt: skip
ax.legend(fontsize=7.5, loc="upper left")
print("fraction of the roof reached (best version of each):")
roof_share = {}
for label, (x, y) in fastest.items():
    peak = ceilings["tf32_matmul_tflop_s"] * 1e12 if "TF32" in label else peak_fp32
    roof_share[label] = y / (min(peak, bandwidth * x) / 1e12)
    print(f"  {label:32s} {roof_share[label]:6.0%}")
memory_bound = [label for label in roof_share if not label.startswith("matmul")]
print(f"memory-bound kernels: from {min(roof_share[k] for k in memory_bound):.0%} to "
      f"{max(roof_share[k] for k in memory_bound):.0%} of the roof ({SOURCE})")  # fmt: skip

# %% [markdown]
# The filled points are `lmcore`'s kernels, the hollow ones the same operations on CuPy's
# generic path: the same intensity, by construction (we count the operation's own flops and
# bytes), but lower, because they move several times the minimum; each section below
# measures by how much. The best version of each memory-bound kernel comes closer to the
# sloped roof, some within a few tenths of it and some well below, by the shares printed
# under the figure; the filled points far below are the naive versions, whose failings the
# sections below explain. The matrix products sit far to the right, where only a kernel that
# reuses its data well comes close to the roof.
#
# ## Writing GPU code with CuPy
#
# CuPy offers three ways to run your own code on the GPU, in rising order of control.
#
# An `ElementwiseKernel` is a C++ expression applied to every element. CuPy writes the
# kernel around it: the threads share out the elements, and indexing, broadcasting and strides
# are handled for you. A `ReductionKernel` maps each element, combines the results with an
# associative operation along an axis, and post-processes the result. A `RawKernel` is
# CUDA C++ that you write in full and launch with an explicit grid and block size. The cell
# below builds one of each; it runs on a GPU, and elsewhere NVRTC compiles the raw kernel's
# source here to check it.

# %%
GELU_EXPRESSION = "y = 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)))"
RAW_SOURCE = r"""
extern "C" __global__ void scale_add(const float* x, const float* y, float* out, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // this thread's element
    if (i < n) out[i] = a * x[i] + y[i];            // the last block may overshoot n
}
"""
if gpu:
    import cupy as cp
    from cupyx.profiler import benchmark

    gelu_elementwise = cp.ElementwiseKernel("float32 x", "float32 y", GELU_EXPRESSION, "gelu_ew")
    row_norm = cp.ReductionKernel(
        "float32 x", "float32 y", "x * x", "a + b", "y = sqrtf(a)", "0", "row_norm"
    )  # map, reduce, post-map, identity
    scale_add = cp.RawKernel(RAW_SOURCE, "scale_add")

    x = cp.random.standard_normal((4096, 1024), dtype=cp.float32)
    y = cp.random.standard_normal((4096, 1024), dtype=cp.float32)
    out = cp.empty_like(x)
    n = x.size
    scale_add((math.ceil(n / 256),), (256,), (x, y, out, np.float32(2.0), np.int32(n)))
    assert np.allclose(out.get(), 2 * x.get() + y.get(), atol=1e-5)
    assert np.allclose(gelu_elementwise(x).get(), reference.gelu(x.get()), atol=1e-5)
    assert np.allclose(row_norm(x, axis=1).get(), np.linalg.norm(x.get(), axis=1), rtol=1e-4)
    # GPU calls return before the GPU has finished: time with CUDA events, after a warm-up.
    timed = benchmark(gelu_elementwise, (x,), n_repeat=50, n_warmup=5)
    ms = float(np.median(timed.gpu_times)) * 1e3
    print(
        f"ElementwiseKernel GELU on {x.shape}: {ms:.3f} ms, {8 * n / ms / 1e6:,.0f} GB/s (this run)"
    )
else:
    print("No GPU here: the three CuPy kernels above are built only on a GPU.")
if nvrtc.available():
    raw_ptx = nvrtc.compile_ptx(RAW_SOURCE, arch="compute_90", name="scale_add.cu")
    print("\n".join(line for line in raw_ptx.splitlines() if "global" in line or ".entry" in line))
    assert ".visible .entry scale_add" in raw_ptx

# %% [markdown]
# The raw kernel's PTX, NVIDIA's portable assembly language, shows the two loads from global
# memory (`ld.global`) and the one store (`st.global`) that the kernel makes per element:
# its $Q$ is 12 bytes per element. A GPU driver compiles PTX further into the machine code
# of the particular chip.
#
# Two habits matter for any GPU timing. A launch returns at once, so a Python timer around it
# measures only the launch; the timers above and in `lmcore bench gpu` record CUDA events in
# the GPU's own queue. And the first call compiles the kernel and warms caches, so it is
# excluded.
#
# `lmcore`'s kernels are `RawKernel`s, one family per `.cu` file in `lmcore/cuda/`, compiled
# on first use with CuPy's `RawModule` (NVRTC underneath). Each family comes with a NumPy
# reference in float64, `lmcore.cuda.reference`, written for clarity and checked below
# against `lmcore`'s autograd on the CPU, and with launchers in `lmcore.cuda.ops`:

# %%
for family in loader.families():
    print(f"{family + '.cu':18s}", ", ".join(loader.kernel_names(family)))

# %% [markdown]
# ## GELU: one pass, and wider loads
#
# GELU in the tanh form of GPT-2, and its slope for the backward pass, are in the reference:

# %%
show(reference.gelu)

# %%
show(reference.gelu_backward)

# %% [markdown]
# Before any GPU code, the reference itself must be right. `lmcore`'s autograd (chapter 3)
# computes GELU and its gradient its own way, with a formula rewritten in terms of the
# logistic function; in float64 the two must agree to rounding.

# %%
rng = np.random.default_rng(0)
n_check = config.pick(quick=20_000, standard=200_000)
x64 = rng.standard_normal(n_check) * 3
upstream = rng.standard_normal(n_check)
xt = Tensor(x64, requires_grad=True)
(F.gelu(xt) * Tensor(upstream)).sum().backward()
errors = {
    "gelu": np.abs(F.gelu(Tensor(x64)).numpy() - reference.gelu(x64)).max(),
    "gelu_backward": np.abs(xt.grad.numpy() - reference.gelu_backward(x64, upstream)).max(),
}
print({k: f"{v:.1e}" for k, v in errors.items()})
assert max(errors.values()) < 1e-12

# %% [markdown]
# The first kernel gives each thread one element at a time, in a **grid-stride loop**: thread
# $i$ of the grid handles elements $i$, $i + G$, $i + 2G, \dots$ where $G$ is the number of
# threads in the grid, so any grid size covers any array.

# %%
show_cuda("gelu", "gelu_forward_v1")

# %% [markdown]
# Neighbouring threads of a warp read neighbouring floats, so one load instruction of a warp
# asks for 32 consecutive 4-byte words, 128 contiguous bytes. Global memory is read in
# 32-byte sectors, and this request needs exactly four of them, every byte of which is used:
# the load is **coalesced**. That is already the access pattern a memory-bound kernel wants.
#
# The second version moves 16 bytes per thread per instruction, as a `float4`:

# %%
show_cuda("gelu", "gelu_forward_v2")

# %% [markdown]
# The bytes are the same; what changes is that each thread issues a quarter of the load and
# store instructions and has four independent elements in flight instead of one, which
# helps keep enough memory requests outstanding to cover the latency. The cast to `float4*`
# requires 16-byte aligned pointers, which the launcher checks (falling back to v1), and the
# last `n % 4` elements are done one by one.
#
# We can see the difference in the compiled code without a GPU: compile the family to PTX
# with NVRTC and count the load and store instructions of each kernel.

# %%
if nvrtc.available():
    gelu_ptx = ptx_functions("gelu")
    for name in ("gelu_forward_v1", "gelu_forward_v2"):
        print(name, dict(instructions(gelu_ptx[name])))
    assert "ld.global.nc.v4.f32" in gelu_ptx["gelu_forward_v2"]
    assert "st.global.v4.f32" in gelu_ptx["gelu_forward_v2"]
    assert ".v4." not in gelu_ptx["gelu_forward_v1"]
    print(next(s.strip() for s in gelu_ptx["gelu_forward_v2"].splitlines() if ".v4.f32" in s))
else:
    print("NVRTC is missing: `pip install nvidia-cuda-nvrtc-cu12` compiles CUDA without a GPU")

# %% [markdown]
# Version 2 has one 16-byte vector load (`ld.global.nc.v4.f32`: `nc` because the input is
# `const __restrict__`, read-only for the kernel's lifetime) and one vector store in its main
# loop; version 1 has only 4-byte loads (several, because the compiler unrolled its loop).
# Here are the measurements, beside CuPy's generic path (`lmcore`'s NumPy GELU run on CuPy):

# %%
kernel_table("gelu")
gelu_gain = speedup("gelu", "forward", "v1", "v2")
gelu_fusion = speedup("gelu", "forward", "cupy", "v2")
print(f"forward: v2 is {gelu_gain:.2f}x v1, and {gelu_fusion:.1f}x CuPy's generic path")

# %%
# Claims about the measured results (read from `results`).
if STRICT:
    assert gelu_gain > 0.9  # v2 is at least about as fast as v1
    assert gelu_fusion > 5  # one fused pass beats nine generic passes by a wide margin
    assert min(r["fraction_of_copy"] for r in kernel_rows("gelu") if r["version"] != "cupy") > 0.7
assert all(r["max_rel_error"] < 1e-5 for r in kernel_rows("gelu") if r.get("max_rel_error"))

# %% [markdown]
# Both kernels reach most of the copy bandwidth, the floor for a kernel that reads and writes
# every element once (more than 70 % of it, asserted; the table gives each share). The wider
# loads of v2 change the time by the ratio printed above: on a kernel whose loads were already
# coalesced they can only close part of the remaining gap to the floor. The large step is from
# the generic path to either kernel (more than five times faster, asserted): one pass over
# memory instead of about nine.
#
# ## Softmax: coalescing, warp shuffles and the online softmax
#
# The softmax of a row, with its largest value subtracted so that `exp` never overflows:

# %%
show(reference.softmax)

# %% [markdown]
# Its backward pass follows from the Jacobian $\partial y_j / \partial x_i = y_j(\delta_{ij} -
# y_i)$: for an upstream gradient $dy$,
#
# $$
# dx_j = \sum_i dy_i\, y_i (\delta_{ij} - y_j) = y_j \Big(dy_j - \sum_i dy_i\, y_i\Big),
# $$
#
# one dot product per row and one elementwise pass. Both agree with `lmcore`'s autograd:

# %%
rows_check = config.pick(quick=64, standard=512)
s64 = rng.standard_normal((rows_check, 300)) * 4
upstream = rng.standard_normal(s64.shape)
st = Tensor(s64, requires_grad=True)
(F.softmax(st, dim=-1) * Tensor(upstream)).sum().backward()
y_ref = reference.softmax(s64)
errors["softmax"] = np.abs(F.softmax(Tensor(s64), dim=-1).numpy() - y_ref).max()
errors["softmax_backward"] = np.abs(
    st.grad.numpy() - reference.softmax_backward(y_ref, upstream)
).max()
print({k: f"{errors[k]:.1e}" for k in ("softmax", "softmax_backward")})
assert max(errors["softmax"], errors["softmax_backward"]) < 1e-12

# %% [markdown]
# The obvious kernel gives each thread one row and walks along it three times: once for the
# maximum, once for the sum, once to write the output.

# %%
show_cuda("softmax")

# %%
show_cuda("softmax", "softmax_forward_v1")

# %% [markdown]
# The arithmetic is right and the memory access is wrong. At step $j$, lane $\ell$ of a warp
# reads element $j$ of row $\ell$: 32 addresses one row apart. Each needs its own 32-byte
# sector, of which it uses 4 bytes. Let us count the sectors one warp-wide load touches in
# each layout:


# %%
def sectors(byte_addresses) -> int:
    """The 32-byte memory sectors that one warp-wide load touches."""
    return len(np.unique(np.asarray(byte_addresses) // 32))


lanes = np.arange(32)
cols = 1024
layouts = {
    "thread per row (softmax v1)": 4 * (lanes * cols + 7),  # column 7 of 32 rows
    "warp per row (softmax v3)": 4 * (5 * cols + 64 + lanes),  # 32 neighbours in row 5
    "float4 per thread (gelu v2)": (16 * lanes)[:, None] + 4 * np.arange(4),
}
for name, addresses in layouts.items():
    useful = np.asarray(addresses).size * 4
    print(
        f"{name:30s} {sectors(addresses):3d} sectors, {useful / (32 * sectors(addresses)):.0%} of the bytes used"
    )
assert sectors(layouts["thread per row (softmax v1)"]) == 32
assert sectors(layouts["warp per row (softmax v3)"]) == 4
assert sectors(layouts["float4 per thread (gelu v2)"]) == 16  # 512 bytes, all used

# %% [markdown]
# One row per thread fetches eight times the bytes it uses from each sector. The caches can
# catch some of the waste (a sector's other floats are the next steps of the same thread), but
# only while they hold the sectors of every resident warp until they are needed; the
# measurements below show how much of the waste remains.
#
# Version 2 turns the layout around: a whole block of 256 threads takes one row. The threads
# stride through the row together, so every load is coalesced, and combine their partial
# maxima and sums in a tree through shared memory, halving the active threads at each step,
# with a barrier (`__syncthreads()`) between steps so that nobody reads a partial result
# before it is written.

# %%
show_cuda("softmax", "softmax_forward_v2")

# %% [markdown]
# Version 3 makes two more changes. A row is taken by one *warp*, whose 32 lanes combine
# their partial results by exchanging registers directly, with **warp shuffles**
# (`__shfl_xor_sync`): no shared memory and no block-wide barrier. And the maximum and the sum
# are found in one pass instead of two, with the **online softmax** {cite}`milakov2018`.
#
# The online softmax keeps, for the elements seen so far, the running maximum $m$ and the sum
# $\ell$ of $e^{x_j - m}$ *relative to that maximum*. When a new element $x$ arrives,
#
# $$
# m' = \max(m, x), \qquad \ell' = \ell\, e^{m - m'} + e^{x - m'},
# $$
#
# the old sum is rescaled to the new maximum. More generally two partial states $(m_a,
# \ell_a)$ and $(m_b, \ell_b)$, over any two disjoint sets of elements, merge into
#
# $$
# m = \max(m_a, m_b), \qquad \ell = \ell_a e^{m_a - m} + \ell_b e^{m_b - m},
# $$
#
# and at the end $\log \sum_j e^{x_j} = m + \log \ell$. The merge is associative and
# commutative, so the elements may be split among lanes in any way and merged in any order.
# The helpers in `common.cuh`:

# %%
show_cuda("common", between=("// Merge two online-softmax states", "// Sum over a whole block"))

# %%
show_cuda("softmax", "softmax_forward_v3")

# %% [markdown]
# `warp_softmax_merge` is a butterfly: at offsets 16, 8, 4, 2, 1, every lane merges its
# state with that of the lane whose number differs in that one bit. After five rounds every
# lane holds the state of the whole row. Here is the kernel's algorithm in NumPy, one array
# column per lane, checked against the two-pass computation:


# %%
def online_state(values):
    """Running max and rescaled sum of exp, one element at a time (the online softmax)."""
    m = np.full(values.shape[:-1], -np.inf)
    s = np.zeros(values.shape[:-1])
    for j in range(values.shape[-1]):
        top = np.maximum(m, values[..., j])
        s = s * np.exp(m - top) + np.exp(values[..., j] - top)
        m = top
    return m, s


def merge(m_a, s_a, m_b, s_b):
    """Two online-softmax states over disjoint elements, merged into one."""
    m = np.maximum(m_a, m_b)
    return m, s_a * np.exp(m_a - m) + s_b * np.exp(m_b - m)


row_values = rng.standard_normal((rows_check, 1024)) * 5
# Lane l of a warp reads elements l, l + 32, l + 64, ... of the row: columns of (rows, k, 32).
m, s = online_state(np.swapaxes(row_values.reshape(rows_check, -1, 32), 1, 2))  # (rows, 32)
for offset in (16, 8, 4, 2, 1):  # the butterfly of __shfl_xor_sync
    m, s = merge(m, s, m[:, lanes ^ offset], s[:, lanes ^ offset])
two_pass = row_values.max(axis=1) + np.log(
    np.exp(row_values - row_values.max(axis=1, keepdims=True)).sum(axis=1)
)
print("every lane holds the row's log-sum-exp:", np.allclose(m + np.log(s), two_pass[:, None]))
print(
    "largest difference from the two-pass computation:",
    np.abs(m + np.log(s) - two_pass[:, None]).max(),
)
assert np.allclose(m + np.log(s), two_pass[:, None], rtol=0, atol=1e-12)

# %% [markdown]
# The compiled kernels show the difference in mechanism: version 2 synchronizes the block
# at every step of its tree, version 3 never does and exchanges registers instead.

# %%
if nvrtc.available():
    softmax_ptx = ptx_functions("softmax")
    for name in ("softmax_forward_v1", "softmax_forward_v2", "softmax_forward_v3"):
        print(name, dict(instructions(softmax_ptx[name])))
    v2_ops, v3_ops = (instructions(softmax_ptx[f"softmax_forward_v{v}"]) for v in (2, 3))
    assert v2_ops["bar.sync"] > 0 and v2_ops["ld.shared.f32"] > 0
    assert v3_ops["bar.sync"] == 0 and v3_ops["shfl.sync.bfly.b32"] > 0

# %% [markdown]
# Version 3's merge, applied to one new element at a time, computes two exponentials per
# element (it rescales both states to the new maximum), and the row is read twice, once for
# the statistics and once to write. Where a row is short enough, up to 1,024 floats, version
# 4 keeps the whole row in the warp's registers, 32 floats per lane at most: it reads the row
# once, as `float4`, takes the maximum and then each exponential exactly once from the
# registers, and writes. The row length is a template parameter, so that the compiler can
# keep the row's slots in registers, and the launcher picks the smallest instantiation that
# holds the row (`softmax_forward_v4_c128` up to `..._c1024`):

# %%
show_cuda("softmax", "softmax_row_v4")

# %%
kernel_table("softmax")
softmax_versions = [
    r["version"] for r in kernel_rows("softmax", "forward") if r["version"] != "cupy"
]
softmax_gain = {v: speedup("softmax", "forward", "v1", v) for v in softmax_versions[1:]}
softmax_best = best("softmax", "forward")
print("speed-up over v1:", {v: f"{g:.1f}x" for v, g in softmax_gain.items() if g})
print(f"v3 against v2: {speedup('softmax', 'forward', 'v2', 'v3'):.2f}x; the fastest, "
      f"{softmax_best}, against CuPy's generic path: "
      f"{speedup('softmax', 'forward', 'cupy', softmax_best):.1f}x")  # fmt: skip

# %%
# Claims about the measured results (read from `results`).
if STRICT:
    assert softmax_gain["v2"] > 4 and softmax_gain["v3"] > 4  # coalescing pays, by far
    assert speedup("softmax", "forward", "cupy", softmax_best) > 3  # fusion pays
    assert softmax_best == "v4" and speedup("softmax", "forward", "v3", "v4") > 1.5
    v3_share = next(r for r in kernel_rows("softmax", "forward") if r["version"] == "v3")
    assert v3_share["fraction_of_copy"] < min(
        r["fraction_of_copy"] for r in kernel_rows("gelu", "forward") if r["version"] != "cupy"
    )
    assert speedup("softmax", "forward", "v2", "v3") > 0.9  # v3 at least about as fast as v2
    assert speedup("softmax", "forward", "v2", "v3") < softmax_gain["v2"]  # a smaller step
assert all(r["max_rel_error"] < 1e-5 for r in kernel_rows("softmax") if r.get("max_rel_error"))

# %% [markdown]
# Coalescing is the big step: one thread per row is more than four times slower than either
# layout in which a warp reads contiguous memory (asserted; the factors are printed above),
# and the fastest version beats CuPy's five generic passes by more than three (asserted).
# Between versions 2 and 3 the difference is smaller, and its size is the printed ratio: for
# rows that fit in the cache, the second and third passes of version 2 re-read the row from L1
# or L2, not from global memory, so saving a pass saves little traffic to global memory; what
# version 3 saves is barriers and shared-memory round trips. Version 3 still stays further
# from the bandwidth floor than either GELU kernel (asserted; compare the tables), which is
# what version 4 goes after: one read of the row, one exponential per element. It is the
# fastest, more than one and a half times as fast as version 3 (asserted), and comes near
# GELU's share of the bandwidth (compare the tables). The online softmax's one pass matters
# most where a row is too long to hold or to read twice cheaply, as in the cross-entropy over
# a large vocabulary and in attention below.
#
# ## LayerNorm: forward, backward, and a fusion with the residual
#
# LayerNorm normalizes each row $x$ of width $C$ to mean 0 and variance 1, then scales and
# shifts it: $\mu = \frac1C \sum_j x_j$, $r = (\frac1C\sum_j (x_j-\mu)^2 + \epsilon)^{-1/2}$,
# $\hat x = (x - \mu) r$, $y = \hat x \odot w + b$. For the backward pass write $g = dy \odot
# w$. Since $\partial \mu / \partial x_i = 1/C$ and $\partial r / \partial x_i = -r^3 (x_i -
# \mu)/C$ (the terms through $\mu$ cancel because $\sum_j (x_j - \mu) = 0$),
#
# $$
# \frac{\partial \hat x_j}{\partial x_i} = r\Big(\delta_{ij} - \frac1C - \frac{\hat x_i \hat
# x_j}{C}\Big), \qquad
# dx_i = \sum_j g_j \frac{\partial \hat x_j}{\partial x_i}
#      = r\Big(g_i - \overline{g} - \hat x_i\, \overline{g \hat x}\Big),
# $$
#
# where the bars are means over the row, and $dw = \sum_{\text{rows}} dy \odot \hat x$, $db =
# \sum_{\text{rows}} dy$. The reference writes exactly this; we check it against autograd.

# %%
show(reference.layer_norm_backward)

# %%
C_check = 96
x64 = rng.standard_normal((rows_check, C_check)) * 2 + 1
w64, b64 = rng.standard_normal(C_check), rng.standard_normal(C_check)
upstream = rng.standard_normal(x64.shape)
xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x64, w64, b64))
(F.layer_norm(xt, (C_check,), wt, bt) * Tensor(upstream)).sum().backward()
dx_ref, dw_ref, db_ref = reference.layer_norm_backward(x64, w64, upstream)
errors["layer_norm"] = np.abs(
    F.layer_norm(Tensor(x64), (C_check,), Tensor(w64), Tensor(b64)).numpy()
    - reference.layer_norm(x64, w64, b64)[0]
).max()
errors["layer_norm_backward"] = max(
    np.abs(t.grad.numpy() - r).max() for t, r in zip((xt, wt, bt), (dx_ref, dw_ref, db_ref))
)
print({k: f"{errors[k]:.1e}" for k in ("layer_norm", "layer_norm_backward")})
assert max(errors["layer_norm"], errors["layer_norm_backward"]) < 1e-11

# %% [markdown]
# The forward kernel saves $\mu$ and $r$ for the backward pass, two floats per row, and
# recomputes $\hat x$ from $x$ when it is needed, rather than saving $\hat x$, $C$ floats per
# row: arithmetic is cheap, memory traffic and memory are not. Version 1 gives a row to a
# thread (uncoalesced, as softmax v1); version 2 gives it to a warp and sums with shuffles;
# version 3 holds the row in the warp's registers, as softmax v4 does, and reads it once:

# %%
show_cuda("layernorm")

# %%
show_cuda("layernorm", "layernorm_row_warp")

# %% [markdown]
# A pre-norm Transformer block computes `x = x + branch(x)` and then normalizes the new `x`
# for the next branch. Done separately, the add reads two arrays and writes one, and the
# LayerNorm reads that one again and writes its output: 20 bytes per element. The fused
# `residual_layernorm_forward` writes the sum and normalizes it while the row is still in the
# warp's hands (its re-read comes from the cache): 16 bytes and one launch fewer. In
# `lmcore` it sits behind `F.residual_layer_norm`, which `Block` calls for the add after
# attention and the LayerNorm before the MLP; its backward pass adds the gradient reaching
# the sum to the one LayerNorm sends back.
#
# The backward pass has two parts that reduce in different directions. $dx$ needs sums along
# each row, so a warp per row works again (`layernorm_backward_input`). $dw$ and $db$ are sums
# down the columns, over all rows: there, neighbouring threads take neighbouring *columns*,
# so that each load of a warp is still contiguous, and the rows are cut into chunks, one
# block each, whose partial sums a second small reduction adds up. Adding into one array from
# many blocks with atomic operations would work too, but the order of the additions would
# change from run to run, and with it the rounding: the partial sums keep the result
# deterministic. Version 1 of the backward pass is these two kernels, which between them read
# $dy$ and $x$ three times; version 2 holds each row in registers, writes $dx$ and adds the
# row into per-warp sums of $dw$ and $db$ in the same pass, so it reads them once.

# %%
show_cuda("layernorm", "layernorm_backward_params")

# %%
kernel_table("layernorm")
ln_best = best("layernorm", "forward")
print(f"forward v2 against v1: {speedup('layernorm', 'forward', 'v1', 'v2'):.1f}x; the fastest, "
      f"{ln_best}, against CuPy's generic path: "
      f"{speedup('layernorm', 'forward', 'cupy', ln_best):.1f}x")  # fmt: skip
print(f"forward v3 against v2: {speedup('layernorm', 'forward', 'v2', 'v3'):.2f}x")
if speedup("layernorm", "backward", "v1", "v2"):
    print(f"backward v2 against v1: {speedup('layernorm', 'backward', 'v1', 'v2'):.2f}x")
fused = best("layernorm", "residual + forward")  # the fastest fused version
print(f"residual add + LayerNorm, fused ({fused}) against separate: "
      f"{speedup('layernorm', 'residual + forward', 'cupy', fused):.1f}x")  # fmt: skip

# %%
# Claims about the measured results (read from `results`).
if STRICT:
    assert speedup("layernorm", "forward", "v1", "v2") > 5  # coalescing, again
    assert speedup("layernorm", "forward", "cupy", ln_best) > 5
    assert speedup("layernorm", "forward", "v2", "v3") < 1.3  # registers add little here
    assert speedup("layernorm", "backward", "v1", "v2") > 1.3  # one pass instead of three
    assert speedup("layernorm", "residual + forward", "cupy", fused) > 3
assert all(r["max_rel_error"] < 1e-5 for r in kernel_rows("layernorm") if r.get("max_rel_error"))

# %% [markdown]
# The pattern of the softmax repeats: coalescing is worth more than a factor of five
# (asserted), and the fused kernels beat the generic path, which takes several passes for
# the mean, the variance and the normalization and keeps $\hat x$, by more than five for the
# LayerNorm alone and more than three with the residual add (asserted; the measured factors
# are printed above). Holding the row in registers (version 3) adds little to version 2
# (less than 1.3 times, asserted): version 2's second read of a row of 768 floats came from
# the cache, not from global memory. In the backward pass, reading $dy$ and $x$ once instead of
# three times pays more (version 2 is more than 1.3 times as fast, asserted), and still the
# backward pass, with its reductions in two directions, stays further from the floor than
# the forward (the table gives the shares).
#
# ## Cross-entropy without the probabilities
#
# The loss of a row of logits $x$ with target $t$ is $\text{lse}(x) - x_t$, with $\text{lse}(x)
# = \log\sum_c e^{x_c}$, and its gradient is $\partial / \partial x_c = p_c - [c = t]$ with $p =
# \operatorname{softmax}(x)$. Over GPT-2's vocabulary of 50,257 tokens the logits are the
# largest single array of a small model, and the probabilities would be a second one of the
# same size. The fused kernel never writes them: the forward pass reads each row once with an
# online softmax, one block per row, and saves only $\text{lse}$, one float per row; the
# backward pass recomputes $p_c = e^{x_c - \text{lse}}$ as it writes the gradient.

# %%
show_cuda("cross_entropy", "cross_entropy_row")

# %%
show_cuda("cross_entropy", "cross_entropy_backward")

# %%
n_rows, classes = config.pick(quick=128, standard=1024), 500
logits64 = rng.standard_normal((n_rows, classes)) * 3
targets = rng.integers(0, classes, n_rows)
targets[::7] = -100  # ignored positions (padding, say)
for smoothing in (0.0, 0.1):
    lt = Tensor(logits64, requires_grad=True)
    loss = F.cross_entropy(lt, targets, label_smoothing=smoothing, reduction="sum")
    loss.backward()
    ref_loss = reference.cross_entropy(logits64, targets, smoothing=smoothing).sum()
    ref_grad = reference.cross_entropy_backward(logits64, targets, 1.0, smoothing=smoothing)
    errors[f"cross_entropy (smoothing {smoothing})"] = abs(loss.item() - ref_loss) / ref_loss
    errors[f"cross_entropy_backward (smoothing {smoothing})"] = np.abs(
        lt.grad.numpy() - ref_grad
    ).max()
print({k: f"{v:.1e}" for k, v in errors.items() if k.startswith("cross")})
assert max(v for k, v in errors.items() if k.startswith("cross")) < 1e-12

B_, T_, V_ = 8, 1024, 50257  # a GPT-2 batch
print(f"saved for the backward pass at B={B_}, T={T_}, V={V_:,}: probabilities "
      f"{B_ * T_ * V_ * 4 / 2**30:.2f} GiB, lse {B_ * T_ * 4 / 2**10:.0f} KiB")  # fmt: skip

# %% [markdown]
# Version 1 of the forward pass feeds each logit to the merge of two states, which costs two
# exponentials per element. Version 2 adds an element to the running state with one: when it
# is a new maximum only the old sum is rescaled, otherwise only its own term is added.

# %%
show_cuda("common", between=("// Add one value to an online-softmax state", "// A row of up to"))

# %%
kernel_table("cross_entropy")
ce_best = best("cross_entropy", "forward")
ce_gain = speedup("cross_entropy", "forward", "cupy", ce_best)
print(f"the fastest forward, {ce_best}, against CuPy's generic path: {ce_gain:.1f}x")
if speedup("cross_entropy", "forward", "v1", "v2"):
    print(f"one exponential per element (v2) against two (v1): "
          f"{speedup('cross_entropy', 'forward', 'v1', 'v2'):.2f}x")  # fmt: skip

# %%
# Claims about the measured results (read from `results`).
if STRICT:
    assert ce_gain > 4
assert all(
    r["max_rel_error"] < 1e-5 for r in kernel_rows("cross_entropy") if r.get("max_rel_error")
)

# %% [markdown]
# The fused forward pass is more than four times as fast as the generic path (asserted; the
# measured factor is printed above), which makes several passes over the logits and keeps
# the probabilities. How close it comes to the bandwidth floor is the table's share of the
# copy bandwidth; with one block per row of 50,257 logits, the arithmetic per element is
# what separates the two forward versions, which read exactly the same bytes.

# %% [markdown]
# ## AdamW: all tensors in one launch
#
# An AdamW step reads four numbers per parameter (the parameter, its gradient, the two moment
# estimates) and writes three, 28 bytes, with about fourteen operations: one of the lowest
# arithmetic intensities of the chapter. The generic path performs the update as about a dozen
# array operations per tensor, each a launch and a pass over memory. Version 1 does the whole
# update in one kernel per tensor. But a GPT has dozens to hundreds of parameter tensors, many
# of them small (biases, LayerNorm weights), and for those the launch, not the bytes, is the
# cost. Version 2 updates *all* the tensors in one launch: a table of pointers, and a list of
# chunks that tells each block which tensor and which elements to update ("multi-tensor
# apply"). Version 3 is version 2 with `float4` loads and stores, as in GELU.

# %%
show_cuda("adamw", "adamw_v2")

# %% [markdown]
# The update must be exactly `torch.optim.AdamW`'s, which is what the reference writes and
# what `lmcore`'s optimizer does on the CPU. Three steps, checked:

# %%
p64 = rng.standard_normal(1000)
param = Parameter(p64.copy())
adamw = optim.AdamW([param], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
ref_p, ref_m, ref_v = p64.copy(), np.zeros(1000), np.zeros(1000)
for step in (1, 2, 3):
    grad = rng.standard_normal(1000)
    param.grad = grad.copy()
    adamw.step()
    ref_p, ref_m, ref_v = reference.adamw(
        ref_p, grad, ref_m, ref_v, step, 1e-2, (0.9, 0.95), 1e-8, 0.1
    )
errors["adamw"] = np.abs(param.data - ref_p).max()
print(f"AdamW after 3 steps: largest difference {errors['adamw']:.1e}")
assert errors["adamw"] < 1e-12

# %%
kernel_table("adamw")
adamw_ratio = speedup("adamw", "step", "v1", "v2")
adamw_best = best("adamw", "step")
print(f"v2 against v1: {adamw_ratio:.2f}x; the fastest, {adamw_best}, against the generic "
      f"path: {speedup('adamw', 'step', 'cupy', adamw_best):.1f}x")  # fmt: skip
tensors = re.search(r"(\d+) tensors", kernel_rows("adamw", "step")[0]["shape"])
if tensors and adamw_ratio and adamw_ratio > 1:
    extra = (timing("adamw", "step", "v1") - timing("adamw", "step", "v2")) / (int(tensors[1]) - 1)
    print(f"each extra launch of v1 cost about {1e3 * extra:.1f} µs of GPU time ({SOURCE})")

# %%
# Claims about the measured results (read from `results`).
if STRICT:
    assert speedup("adamw", "step", "cupy", best("adamw", "step")) > 8  # one pass, not a dozen
    assert adamw_ratio > 1.2  # one launch beats one per tensor

# %% [markdown]
# The fused update is many times faster than the generic path (more than eight, asserted), and
# one launch for all tensors beats one per tensor by the ratio printed above (more than 1.2,
# asserted), even though GPT-2's tensors are mostly large. The printed cost of each launch
# that version 2 saves includes Python's work of preparing that launch, during which the GPU,
# done with a small tensor, waits for the next one. Version 3's wider loads change little
# here (the table gives each version's time and share of the copy bandwidth), as they changed
# little for GELU: the loads of version 2 were already coalesced. `lmcore`'s `AdamW.step` on
# the GPU groups the tensors and makes the single launch:

# %%
show(optim.AdamW.step)

# %% [markdown]
# ## The matrix product: tiles and registers
#
# Matrix products are most of a Transformer's flops, and `lmcore` leaves them to cuBLAS,
# NVIDIA's library. Writing one anyway shows the other half of the roofline: how a kernel
# *reuses* data to climb from the memory-bound slope towards the compute roof.

# %%
show_cuda("matmul")

# %% [markdown]
# Version 1 gives each thread one output and reads its row of $A$ and column of $B$ from
# global memory: two loads per multiply-add, an intensity of $2/8$ flops per byte of loads,
# far left of the ridge. (The caches serve some of those loads; the table below compares
# version 1 with what two loads per multiply-add from global memory would allow.)
#
# Version 2 stages $32 \times 32$ tiles of $A$ and $B$ in shared memory: each value loaded from
# global memory is used by 32 threads, so global loads drop 32-fold, but every multiply-add
# still reads two operands from shared memory.
#
# Version 3 gives each block of 256 threads a $128 \times 128$ tile of $C$ and each thread an
# $8 \times 8$ patch of it, in registers (**register blocking**). For each $k$, a thread reads 8
# values of $A$ and 8 of $B$ from shared memory into registers and does $8 \times 8 = 64$
# multiply-adds with them:

# %%
show_cuda("matmul", "matmul_v3")

# %%
tile_table = {  # per multiply-add: loads from global memory, loads from shared memory
    "v1: one output per thread": (2, 0),
    "v2: 32 x 32 shared tiles": (2 / 32, 2),
    "v3: 128 x 128 tiles, 8 x 8 per thread": ((128 + 128) / (128 * 128), (8 + 8) / 64),
}
print(f"{'version':40s} {'global loads':>13s} {'shared loads':>13s}   per multiply-add")
for name, (global_loads, shared_loads) in tile_table.items():
    print(f"{name:40s} {global_loads:13.4f} {shared_loads:13.3f}")
if nvrtc.available():
    matmul_ptx = {v: instructions(ptx) for v, ptx in ptx_functions("matmul").items()}
    for v in ("matmul_v2", "matmul_v3"):
        fma, shared = matmul_ptx[v]["fma.rn.f32"], matmul_ptx[v]["ld.shared.f32"]
        print(f"PTX of {v}: {fma} FMAs and {shared} shared loads in the unrolled inner loop")
    assert matmul_ptx["matmul_v2"]["ld.shared.f32"] == 2 * matmul_ptx["matmul_v2"]["fma.rn.f32"]
    assert 4 * matmul_ptx["matmul_v3"]["ld.shared.f32"] == matmul_ptx["matmul_v3"]["fma.rn.f32"]

# %% [markdown]
# The compiled code confirms the counts: version 2's inner loop has two shared loads per
# fused multiply-add (FMA), version 3's has one shared load per four FMAs, because each value
# brought into a register is used eight times. Here is what each step buys, against cuBLAS in
# float32 and with TF32 tensor cores:

# %%
kernel_table("matmul")
matmul_rate = {r["version"]: r["tflop_s"] for r in kernel_rows("matmul")}
naive_bound = ceilings["copy_gb_s"] / 8 * 2 / 1e3  # 8 bytes of loads per 2 flops, in TFLOP/s
print(f"two loads from global memory per multiply-add would allow {naive_bound:.2f} TFLOP/s; "
      f"v1 reached {matmul_rate['v1']:.2f}"
      + (": the caches served part of its loads" if matmul_rate["v1"] > naive_bound else ""))  # fmt: skip
print({v: f"{r / matmul_rate['cuBLAS']:.0%} of cuBLAS float32" for v, r in matmul_rate.items()})

# %%
# Claims about the measured results (read from `results`).
if STRICT:
    assert matmul_rate["v1"] < matmul_rate["v2"] < matmul_rate["v3"]  # each step pays
    assert matmul_rate["v3"] < matmul_rate["cuBLAS"]  # and cuBLAS stays ahead
    assert matmul_rate["cuBLAS TF32"] > 2 * matmul_rate["cuBLAS"]  # tensor cores
assert all(r["max_rel_error"] < 1e-4 for r in kernel_rows("matmul") if "TF32" not in r["version"])

# %% [markdown]
# Each step pays, and cuBLAS stays ahead. Kernels like its add what ours leave out: loads of
# the next tile overlapped with the multiply-adds of the current one (double buffering, and on
# recent GPUs asynchronous copies into shared memory), vector loads, tiles per warp as well as
# per block, and shapes tuned per GPU. With TF32 allowed, cuBLAS runs float32 products on the
# tensor cores, units that multiply small matrix tiles in one instruction, with inputs rounded
# to a 10-bit mantissa and sums kept in float32: the last row of the table, more than twice as
# fast again (asserted; the ratio is in the table), at a small cost in precision (its relative
# error is printed beside it). `lmcore.cuda.allow_tf32()` turns this on for the whole program,
# as `torch.backends.cuda.matmul.allow_tf32` does in PyTorch.
#
# Tiles also explain the advice to use "nice" sizes. A dimension that is not a multiple of
# the tile leaves a last, partial tile whose threads compute and throw away:

# %%
for n in (65, 50257, 50304):
    tiles = math.ceil(n / 128)
    print(
        f"N = {n:6d}: {tiles:4d} tiles of 128 columns, {1 - n / (128 * tiles):5.1%} of their work wasted"
    )

# %% [markdown]
# A character vocabulary of 65 in one 128-wide tile wastes almost half the tile, while GPT-2's
# 50,257 wastes little in 128-wide tiles; padded to 50,304 (a multiple of 128), it wastes
# none, and a multiple of 64 or 128 also meets the alignment that vector loads and tensor-core
# tiles want.
#
# ## Attention without the $T \times T$ matrix
#
# Causal attention for one head computes $S = \tau Q K^\top$ with $\tau = 1/\sqrt{d}$, masks the
# future, $P = \operatorname{softmax}(S)$ row by row, and $O = P V$. Done as written, $S$ and $P$
# are $T \times T$ arrays per head, written to global memory and read back, and $P$ is kept for
# the backward pass: memory and traffic that grow as $T^2$ while $Q$, $K$, $V$ and $O$ grow as
# $T$. FlashAttention {cite}`dao2022` never forms them.
#
# Take one query row $i$ and extend the online softmax with the output. Keep the running
# maximum $m$, the running sum $\ell$ and an unnormalized output $o$, all relative to $m$. For
# each tile of keys $j \in J$, with scores $s_j$:
#
# $$
# m' = \max\big(m, \max_{j\in J} s_j\big), \qquad
# \ell' = \ell\, e^{m - m'} + \sum_{j\in J} e^{s_j - m'}, \qquad
# o' = o\, e^{m - m'} + \sum_{j\in J} e^{s_j - m'}\, v_j .
# $$
#
# By induction, after all tiles $\ell = \sum_j e^{s_j - m}$ and $o = \sum_j e^{s_j - m} v_j$ with
# $m$ the maximum over all keys, so $o / \ell = \sum_j P_{ij} v_j = O_i$ exactly: the factor
# $e^{-m}$ cancels between numerator and denominator. Only one tile of scores exists at a
# time. The forward pass also saves $\text{lse}_i = m + \log \ell$, one float per query.
#
# Here is that algorithm in NumPy, vectorized over the queries (each GPU thread of the kernel
# below holds one query row), checked against the reference, which computes attention the
# direct way:

# %%
show(reference.attention)


# %%
def tiled_attention(q, k, v, tile: int = 32, causal: bool = True):
    """(out, lse) of attention for q (Tq, D), k, v (Tk, D), one tile of keys at a time."""
    tq, tk = len(q), len(k)
    scale = 1 / math.sqrt(q.shape[1])
    m, total = np.full(tq, -np.inf), np.zeros(tq)  # running max and sum, per query
    acc = np.zeros_like(q)  # unnormalized output, relative to m
    visible = np.arange(tq)[:, None] + (tk - tq)  # the last key each query may see
    for j0 in range(0, tk, tile):
        s = scale * q @ k[j0 : j0 + tile].T  # (Tq, tile): the only scores ever held
        if causal:
            s = np.where(j0 + np.arange(s.shape[1]) <= visible, s, -np.inf)
        m_new = np.maximum(m, s.max(axis=1))
        correction = np.exp(m - m_new)  # rescale what was summed under the old maximum
        p = np.exp(s - m_new[:, None])
        total = total * correction + p.sum(axis=1)
        acc = acc * correction[:, None] + p @ v[j0 : j0 + tile]
        m = m_new
    return acc / total[:, None], m + np.log(total)


T_check, D_check = config.pick(quick=200, standard=500), 32
q64, k64, v64 = (rng.standard_normal((T_check, D_check)) for _ in range(3))
out_tiled, lse_tiled = tiled_attention(q64, k64, v64)
out_ref, lse_ref = reference.attention(q64, k64, v64, causal=True)
errors["tiled attention"] = max(
    np.abs(out_tiled - out_ref).max(), np.abs(lse_tiled - lse_ref).max()
)
print(f"tiled attention against the reference: largest difference {errors['tiled attention']:.1e}")
assert errors["tiled attention"] < 1e-12

# %% [markdown]
# The reference also agrees with `lmcore`'s attention (chapter 5), forward and backward,
# which makes it a trustworthy yardstick for the kernels:

# %%
shape4 = (2, 3, 40, 16)  # (B, H, T, D)
q4, k4, v4, g4 = (rng.standard_normal(shape4) for _ in range(4))
qt, kt, vt = (Tensor(a, requires_grad=True) for a in (q4, k4, v4))
out = scaled_dot_product_attention(qt, kt, vt, causal=True)
(out * Tensor(g4)).sum().backward()
errors["attention"] = np.abs(out.numpy() - reference.attention(q4, k4, v4)[0]).max()
grads_ref = reference.attention_backward(q4, k4, v4, g4)
errors["attention_backward"] = max(
    np.abs(t.grad.numpy() - r).max() for t, r in zip((qt, kt, vt), grads_ref)
)
print({k: f"{errors[k]:.1e}" for k in ("attention", "attention_backward")})
assert max(errors["attention"], errors["attention_backward"]) < 1e-12

# %% [markdown]
# The backward pass needs $P$, and FlashAttention recomputes it, tile by tile, from $Q$, $K$
# and the saved $\text{lse}$: $P_{ij} = e^{\tau q_i \cdot k_j - \text{lse}_i}$. The gradients are
# $dV = P^\top dO$, $dP = dO\, V^\top$, $dS = P \odot (dP - \delta \mathbf{1}^\top)$ and $dQ =
# \tau\, dS\, K$, $dK = \tau\, dS^\top Q$, where $\delta_i = \sum_j P_{ij} dP_{ij}$ comes from the
# softmax's Jacobian as in the softmax section. That sum over all keys looks as if it needed
# the whole row of $P$, but
#
# $$
# \delta_i = \sum_j P_{ij}\, dO_i \cdot v_j = dO_i \cdot \sum_j P_{ij} v_j = dO_i \cdot O_i ,
# $$
#
# a dot product of two vectors of width $d$ that the forward pass already produced. A check:

# %%
P = reference.softmax(q64 @ k64.T / math.sqrt(D_check), causal=True)
dO = rng.standard_normal(out_ref.shape)
delta_from_P = (P * (dO @ v64.T)).sum(axis=1)
delta_from_O = (dO * out_ref).sum(axis=1)
print("largest difference:", np.abs(delta_from_P - delta_from_O).max())
assert np.allclose(delta_from_P, delta_from_O, rtol=0, atol=1e-12)

# %% [markdown]
# `lmcore`'s kernels follow this plan in float32, with one query per thread (a simplification
# of FlashAttention, which gives a tile of queries to each block of threads and does its
# matrix products on the tensor cores). The forward kernel keeps its query and its output
# accumulator in registers and streams tiles of $K$ and $V$ through shared memory. The
# backward pass runs three kernels: $\delta$; then $dK$ and $dV$ with one *key* per thread,
# looping over the queries that see it; then $dQ$ with one query per thread, looping over
# keys. Splitting by key and by query lets every thread own what it writes, with no atomic
# additions, at the price of computing $P$ twice. FlashAttention-2 {cite}`dao2023` reorganizes
# the same computation for more parallelism and fewer non-matrix operations.

# %%
show_cuda("attention", "flash_forward")

# %% [markdown]
# What the tiling saves in memory shows already on the CPU. We measure the peak memory that
# the reference (which forms $S$ and $P$) and the tiled NumPy version allocate, with Python's
# `tracemalloc`, as the context grows:

# %%
contexts = config.pick(quick=[128, 256, 512, 1024], standard=[256, 512, 1024, 2048])
peaks = {"full T x T (reference)": [], "tiled, 32 keys at a time": []}
for T in contexts:
    q_, k_, v_ = (rng.standard_normal((T, 64)) for _ in range(3))
    for name, fn in (
        ("full T x T (reference)", reference.attention),
        ("tiled, 32 keys at a time", tiled_attention),
    ):
        tracemalloc.start()
        fn(q_, k_, v_)
        peaks[name].append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
growth = {name: p[-1] / p[0] for name, p in peaks.items()}
print(f"{'T':>6s}" + "".join(f"{name:>28s}" for name in peaks))
for i, T in enumerate(contexts):
    print(f"{T:6d}" + "".join(f"{p[i] / 2**20:25.2f} MiB" for p in peaks.values()))
print(f"context x{contexts[-1] // contexts[0]}: peak memory x{growth['full T x T (reference)']:.0f} "
      f"(full) and x{growth['tiled, 32 keys at a time']:.1f} (tiled) in this run")  # fmt: skip
ratio_T = contexts[-1] / contexts[0]
assert growth["full T x T (reference)"] > 0.5 * ratio_T**2
assert growth["tiled, 32 keys at a time"] < 1.5 * ratio_T

# %% [markdown]
# The full computation's peak grows with the square of the context (to within the asserted
# factor), the tiled one's in proportion to it. On the GPU the same holds for the forward and
# backward passes together, now with the training shape of a head (width 64):

# %%
attention_rows = results.get("attention", [])
paths = sorted({r["path"] for r in attention_rows}, key=lambda p: (p != "flash", p))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
for path, style in zip(paths, ("o-", "s-", "^-")):
    rows_ = sorted((r for r in attention_rows if r["path"] == path), key=lambda r: r["T"])
    Ts = [r["T"] for r in rows_]
    ax1.plot(Ts, [r["peak_mib"] for r in rows_], style, label=path)
    ax2.plot(Ts, [r["ms"] for r in rows_], style, label=path)
for ax in (ax1, ax2):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
ax1.set(xlabel="context $T$", ylabel="peak MiB (forward + backward)", title=f"memory ({SOURCE})")
ax2.set(xlabel="context $T$", ylabel="ms (forward + backward)", title=f"time ({SOURCE})")
ax1.legend(fontsize=8)
fig.tight_layout()
attention = {(r["T"], r["path"]): r for r in attention_rows}
lengths = sorted({r["T"] for r in attention_rows})
unfused = next((p for p in paths if p.startswith("unfused")), None)
for T in lengths:
    print(f"T = {T:5d}: " + ", ".join(
        f"{p} {attention[T, p]['ms']:.2f} ms / {attention[T, p]['peak_mib']:.0f} MiB" for p in paths
        if (T, p) in attention))  # fmt: skip
unfused_T = [attention[T, unfused] for T in lengths]
flash_T = [attention[T, "flash"] for T in lengths]
time_ratio = [f["ms"] / u["ms"] for f, u in zip(flash_T, unfused_T)]
print(
    "flash time / unfused time:", ", ".join(f"T={T}: {r:.2f}" for T, r in zip(lengths, time_ratio))
)
# The unfused path's memory grows as T^2: where would it stop fitting on this device?
fits_until = lengths[-1] * math.sqrt(device["memory_gib"] * 1024 / unfused_T[-1]["peak_mib"])
print(f"lmcore uses the flash kernels from {cuda.FLASH_ATTENTION_MIN_KEYS} keys on")
print(f"extrapolated as T^2, the unfused path would outgrow the {device['memory_gib']} GiB of the "
      f"device near T = {fits_until:,.0f}; the flash kernels would then need about "
      f"{flash_T[-1]['peak_mib'] * fits_until / lengths[-1] / 1024:.1f} GiB")  # fmt: skip

# %%
# Claims about the measured results (read from `results`).
flash_growth = (
    attention[lengths[-1], "flash"]["peak_mib"] / attention[lengths[0], "flash"]["peak_mib"]
)
unfused_growth = (
    attention[lengths[-1], unfused]["peak_mib"] / attention[lengths[0], unfused]["peak_mib"]
)
print(f"peak memory grows x{flash_growth:.1f} (flash) and x{unfused_growth:.1f} (unfused) "
      f"while T grows x{lengths[-1] // lengths[0]}")  # fmt: skip
assert flash_growth < 1.5 * lengths[-1] / lengths[0] < unfused_growth
if STRICT:
    assert flash_T[-1]["peak_mib"] < 0.25 * unfused_T[-1]["peak_mib"]
if STRICT:
    assert all(r > 1 for r in time_ratio)  # slower than the unfused path at every length...
    assert time_ratio[-1] < max(time_ratio)  # ...but by less at the longest than at the worst
    generic_path = attention[lengths[-1], "generic CuPy"]["ms"]
    assert flash_T[-1]["ms"] < generic_path  # and faster than the generic path at the longest

# %% [markdown]
# The memory of the unfused paths grows faster than the context (asserted for the path with
# the fused softmax), that of the flash kernels in proportion to it: at the longest context
# measured, the flash kernels need less than a quarter of the unfused path's memory
# (asserted), and the unfused path, extrapolated, would stop fitting on the device at the
# context printed above.
#
# In time, `lmcore`'s flash kernels did not pay. They are slower than the unfused path at
# every length measured (asserted), by the ratios printed above, though by less at long
# contexts than at short ones, and faster than the generic path at the longest. The reason is
# the matrix products: the unfused path hands $QK^\top$ and $PV$ to cuBLAS, while our kernel
# computes them one query per thread, each thread re-reading the tile of keys from shared
# memory, with none of the reuse in registers that made `matmul_v3` fast. FlashAttention's
# kernels compute those products on the tensor cores, tile by tile, and so win in time as
# well as in memory {cite}`dao2022`; that is the next step for these kernels. `lmcore`
# therefore keeps the unfused path below `lmcore.cuda.FLASH_ATTENTION_MIN_KEYS` keys (the
# number printed above) and switches to the flash kernels from there on, where memory, not
# time, is what runs out.
#
# The unfused path does not take attention's softmax as separate generic passes either: one
# kernel scales the scores, applies the causal mask and takes the softmax, in place
# (`attention_softmax_forward`; exercise 3 counts the bytes this saves). Its two versions, an
# online softmax and a row held in registers as in softmax v4, on the attention scores of the
# training shape:

# %%
if kernel_rows("attention_softmax"):
    kernel_table("attention_softmax")
else:
    print(f"{SOURCE} has no timings of the attention softmax")

# %% [markdown]
# ## Wiring the kernels into autograd
#
# The kernels are not a separate library the user must call. `lmcore`'s operations, written
# for NumPy in chapter 3, check their input and take the kernel when it applies: a
# contiguous float32 CuPy array, with kernels switched on. Anything else (float64, a strided
# view, a NumPy array) takes the generic path, which is also the fallback when a kernel does
# not cover a case.

# %%
show(cuda.wanted)

# %%
show(F.GELU.forward)

# %% [markdown]
# `GELU.forward` keeps only `x` for the backward pass when the kernel runs, where the generic
# path keeps a second array, and `GELU.backward` sends the gradient to the backward kernel.
# LayerNorm, softmax, cross-entropy, attention (`ScaledDotProductAttention._kernel_forward`
# picks the flash kernels or the unfused path with the fused softmax) and `AdamW.step` do the
# same. `LMCORE_KERNELS=0` in the environment, or `with lmcore.cuda.use_kernels(False):`,
# turns the kernels off for comparison. On this machine's NumPy arrays they never apply:

# %%
print("kernel wanted for a NumPy float32 array:", cuda.wanted(np.zeros(4, np.float32)))
assert not cuda.wanted(np.zeros(4, np.float32))
if gpu:
    xg = cp.random.standard_normal((512, 384), dtype=cp.float32)
    with cuda.use_kernels(True):
        on = F.layer_norm(Tensor(xg), (384,)).data
    with cuda.use_kernels(False):
        off = F.layer_norm(Tensor(xg), (384,)).data
    print("LayerNorm with and without the kernel, largest difference:", float(abs(on - off).max()))
    assert float(abs(on - off).max()) < 1e-5
show(ScaledDotProductAttention._kernel_forward)

# %% [markdown]
# ## The training step, rung by rung
#
# What do the kernels do for a whole training step? The benchmark trains the GPT of nanoGPT's
# Shakespeare configuration (printed below; the `quick` profile shrinks it on a GPU) one rung
# at a time: CuPy's generic functions in float32; the same with TF32 matrix products; the same
# with `lmcore`'s kernels; and, where PyTorch is installed, PyTorch's eager mode with TF32 and
# with bfloat16 autocast, for comparison.

# %%
from lmcore.bench.gpu import TRAIN_SHAPE

print("training shape:", TRAIN_SHAPE)
training = [r for r in results.get("training", []) if "tokens_per_s" in r]  # measured rungs
columns = ("rung", "tokens_per_s", "ms_per_step", "host_ms_per_step", "peak_mib", "first_loss")
print_table([{k: r.get(k) for k in columns} for r in training], title=f"training step ({SOURCE})")


def rung(words: str) -> dict | None:
    """The first rung of the ladder whose name contains ``words``."""
    return next((r for r in training if words in r["rung"]), None)


fig, ax = plt.subplots(figsize=(7, 0.5 + 0.5 * len(training)))
names = [r["rung"] for r in training][::-1]
speeds = [r["tokens_per_s"] / 1e6 for r in training][::-1]
colors = ["tab:gray" if "PyTorch" in n else "tab:blue" for n in names]
ax.barh(names, speeds, color=colors)
for i, s in enumerate(speeds):
    ax.text(s, i, f" {s:.2f} M", va="center", fontsize=8)
ax.set(xlabel="million tokens per second", title=f"GPT training step, {device['name']} ({SOURCE})")
ax.set_xlim(0, 1.2 * max(speeds))
generic, kernels = rung("generic"), rung("lmcore kernels")
print(f"the kernels make the step {kernels['tokens_per_s'] / generic['tokens_per_s']:.1f}x as fast "
      f"as the generic path ({SOURCE})")  # fmt: skip
torch_tf32 = rung("PyTorch eager, TF32")
if torch_tf32:
    print(f"lmcore with its kernels runs at {kernels['tokens_per_s'] / torch_tf32['tokens_per_s']:.2f}x "
          "PyTorch eager with TF32")  # fmt: skip

# %%
# Claims about the measured results (read from `results`).
lmcore_rungs = [r for r in training if "PyTorch" not in r["rung"]]
host_share = (
    kernels["host_ms_per_step"] / kernels["ms_per_step"] if "host_ms_per_step" in kernels else None
)
assert (
    max(r["first_loss"] for r in lmcore_rungs) - min(r["first_loss"] for r in lmcore_rungs) < 0.01
)
if STRICT:
    assert kernels["tokens_per_s"] > 2.5 * generic["tokens_per_s"]
    assert kernels["peak_mib"] <= generic["peak_mib"]
    assert torch_tf32 is None or torch_tf32["tokens_per_s"] > kernels["tokens_per_s"]
    assert host_share is None or host_share > 0.8  # the CPU needs about as long as the GPU
if host_share:
    print(f"with the kernels, issuing a step takes the CPU {kernels['host_ms_per_step']} ms and "
          f"running it the GPU {kernels['ms_per_step']} ms ({SOURCE})")  # fmt: skip

# %% [markdown]
# The first loss of every `lmcore` rung is the same to within the asserted 0.01: the same
# model, the same batch, and the kernels change the arithmetic's order, not its result. (The
# recorded run's PyTorch rows start from PyTorch's own initialization, whose N(0, 1) token
# embeddings, tied to the output layer, give a first loss in the hundreds; the record's
# `bench_revision`, printed at the top, says so. Their timings do not depend on the weights,
# and the benchmark now starts PyTorch from `lmcore`'s initial weights.) The
# kernels make the step more than two and a half times as fast as the generic path
# (asserted; the factor is printed above) and need no more memory (asserted). PyTorch's eager
# mode is still faster (asserted, where the record has it). The host's own time per step,
# measured without waiting for the loss, is printed beside the GPU's: in the measured run the
# CPU needed about as long to issue a step as the step took (at least 80 %, asserted). The
# CPU is therefore busy for the whole step, in Python and in launch calls; whether it is the
# bottleneck or only keeps pace, the cost of each launch now matters as much as the kernels
# do, the subject of the section after next.
#
# A last check that the kernels compute the same *training*, not only the same step: the
# benchmark trains a small GPT from the same initial weights on the same batches, on the GPU
# with the kernels and on the CPU with NumPy, both in float32.

# %%
curve = results.get("loss_curve", {})
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(curve["steps"], curve["cpu"], "o-", label="CPU, NumPy")
ax.plot(curve["steps"], curve["gpu_kernels"], "x--", label="GPU, lmcore kernels")
ax.set(xlabel="step", ylabel="training loss", title=f"same run on two devices ({SOURCE})")
ax.legend()
curve_gap = np.abs(np.subtract(curve["cpu"], curve["gpu_kernels"])).max()
print(f"largest difference between the two loss curves: {curve_gap:.1e}")
assert curve_gap < 1e-3

# %% [markdown]
# (The recorded run trained on random tokens, so its loss stays near $\ln 65 \approx 4.17$,
# the loss of a uniform guess; the benchmark now trains on Shakespeare, where it falls.)
# The two curves lie on each other: they differ by less than 0.001 at every step (asserted;
# the largest difference is printed above). Floating-point sums in another order round
# differently, so two devices need not agree bit for bit, but a kernel that dropped a term or
# mishandled a boundary would show up here at once.
#
# ## Launch overhead and CUDA graphs
#
# Every kernel launch costs time on the CPU (Python, CuPy, the driver) and a gap on the GPU
# between one kernel and the next, on the order of microseconds each. A kernel that moves a
# few kilobytes finishes faster than that, so for small tensors the launches *are* the
# run time. How many launches does a training step make? Count the operations in the autograd
# graph of one forward pass of the GPT above:

# %%
manual_seed(0)
small = GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384), device="cpu")
idx = np.zeros((1, 16), np.int64)  # the graph's operations do not depend on the batch's size
_, loss = small(idx, idx)
graph, stack, seen = Counter(), [loss.creator], set()
while stack:  # walk the graph from the loss back to the leaves
    function = stack.pop()
    if function is None or id(function) in seen:
        continue
    seen.add(id(function))
    graph[type(function).__name__] += 1
    stack.extend(t.creator for t in function.inputs)
operations = sum(graph.values())
n_tensors = len(list(small.parameters()))
print(f"{operations} operations in the forward graph: {dict(graph.most_common())}")
print(f"{n_tensors} parameter tensors")
print(f"about {2 * operations} launches for the forward and backward passes, then 1 for the "
      f"optimizer with multi-tensor AdamW, or {n_tensors} with one launch per tensor")  # fmt: skip
assert operations > 50 and n_tensors > 50

# %% [markdown]
# With the kernels, an operation launches about one kernel forward and one backward (a few
# launch none, because they only reshape a view; the attention and LayerNorm backward passes
# launch several); on CuPy's generic path, each fused operation becomes several launches.
# Fusion therefore pays twice: fewer bytes, and fewer launches. On a GPU, we can measure what
# one launch costs, and what the same launches cost when they are replayed as a CUDA graph
# (explained below):

# %%
if gpu:
    empty = cp.RawKernel('extern "C" __global__ void empty() {}', "empty")
    empty((1,), (32,), ())
    cp.cuda.Device().synchronize()
    launches = 2000
    start = time.perf_counter()
    for _ in range(launches):
        empty((1,), (32,), ())
    queued = time.perf_counter() - start
    cp.cuda.Device().synchronize()
    print(f"one launch of an empty kernel: {1e6 * queued / launches:.1f} µs of CPU time (this run)")
    # The same launches captured once in a CUDA graph, then replayed with one call.
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        for _ in range(launches):
            empty((1,), (32,), ())
        graph_exec = stream.end_capture()
    graph_exec.launch(stream)
    stream.synchronize()
    start = time.perf_counter()
    graph_exec.launch(stream)
    stream.synchronize()
    replay = time.perf_counter() - start
    print(f"the same {launches} launches replayed as a CUDA graph: {1e6 * replay / launches:.2f} µs "
          "each (this run)")  # fmt: skip
else:
    print("No GPU here: the launch cost is measured when a GPU is present.")

# %% [markdown]
# A **CUDA graph** {cite}`nvidia2024cuda` removes most of the per-launch CPU cost: the
# launches of a whole step are recorded once ("captured"), prepared once by the driver, and
# then replayed with one call. The price is rigidity. A replay repeats exactly the recorded
# kernels on exactly the recorded memory addresses, so shapes must not change, every buffer
# must stay where it was (allocations inside the step must come back at the same addresses),
# and nothing in the step may wait for the CPU, as reading the loss with `.item()` or checking
# for NaN does. Whether launches matter for a step depends on how long its kernels run: while
# each kernel takes longer than the CPU needs to queue the next one, the GPU never waits. At
# small batches, or in the one-token steps of text generation, each kernel does little work
# and the launches set the pace; that is where capturing the step pays most.
#
# `lmcore.cuda.graphs.CapturedStep` captures a training step's forward and backward passes
# and meets each of those demands in a plain way: the batch is copied into static input
# buffers before each replay; the checks that read values back on the host (token ids in
# range, valid class indices) are skipped while `capturing()` is true, and the step checks
# each batch once on the host instead; allocations made during capture come from a private
# memory pool that nothing else touches; and the optimizer, whose learning rate and bias
# corrections change every step, runs after the replay, outside the graph. Dropout is
# refused, since its random masks would be frozen at capture. `lmcore bench gpu` measures
# the captured step as the rung "+ CUDA graph of forward and backward" of the training
# ladder; the recorded run this page reads shows it when that run includes it.
#
# ## Half precision and loss scaling
#
# Everything so far is float32. Tensor cores are faster still on 16-bit inputs, and 16-bit
# activations halve the bytes that memory-bound kernels move. The two 16-bit formats split
# their bits differently: float16 has 5 exponent bits and 10 mantissa bits, bfloat16
# {cite}`kalamkar2019` has float32's 8 exponent bits and only 7 mantissa bits. TF32, the
# tensor-core format of the matrix products above, has 8 and 10. NumPy has float16; we
# emulate bfloat16 by rounding float32's bit pattern to its upper 16 bits.


# %%
def to_bfloat16(x) -> np.ndarray:
    """x rounded to bfloat16 (nearest, ties to even), returned as float32."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


f16 = np.finfo(np.float16)
print(f"float16:  largest {float(f16.max):.0f}, smallest normal {float(f16.smallest_normal):.1e}, "
      f"smallest subnormal {float(f16.smallest_subnormal):.1e}, spacing at 1: {float(f16.eps):.1e}")  # fmt: skip
bf16_max = np.array(0x7F7F0000, np.uint32).view(np.float32)  # exponent 254, mantissa all ones
print(f"bfloat16: largest {float(bf16_max):.2e}, spacing at 1: "
      f"{float(to_bfloat16(1 + 2**-7) - 1):.1e}")  # fmt: skip
assert to_bfloat16(1 + 2**-7) == 1 + 2**-7 and to_bfloat16(1 + 2**-9) == 1  # 7 mantissa bits

# %% [markdown]
# float16's range is narrow. Gradients are small numbers, and those below float16's smallest
# normal number lose precision (the subnormals have fewer significant bits) while those below
# its smallest subnormal become zero. Let us look at real gradients: one backward pass of a
# small GPT on random tokens, every nonzero gradient cast to float16.

# %%
manual_seed(0)
model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), device="cpu")
batch = rng.integers(0, 65, (8, 64))
_, loss = model(batch, batch)
loss.backward()
grads = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
grads = grads[grads != 0]


def half_precision_report(g, scale: float) -> dict:
    """What casting scale * g to float16 (and dividing back in float32) does to gradients."""
    with np.errstate(over="ignore"):
        half = (g * np.float32(scale)).astype(np.float16)
    back = half.astype(np.float32) / np.float32(scale)
    relative = np.abs(back - g) / np.abs(g)
    return {
        "flushed to zero": np.mean(half == 0),
        "subnormal": np.mean((half != 0) & (np.abs(half) < f16.smallest_normal)),
        "overflowed": np.mean(~np.isfinite(half)),
        "99.9th pct. rel. error": np.percentile(relative[np.isfinite(relative)], 99.9),
    }


largest = np.abs(grads).max()
safe_scale = 2.0 ** math.floor(math.log2(float(f16.max) / largest))  # largest power of 2 that fits
print(f"{grads.size:,} nonzero gradients, from {np.abs(grads).min():.1e} to {largest:.1e}")
reports = {s: half_precision_report(grads, s) for s in (1.0, 2.0**10, safe_scale, 4 * safe_scale)}
print(f"{'loss scale':>12s}" + "".join(f"{k:>24s}" for k in reports[1.0]))
for s, report in reports.items():
    print(f"{s:12.0f}" + "".join(f"{v:24.2e}" for v in report.values()))
unit_roundoff = 2.0**-11  # float16's largest relative rounding error for normal numbers
assert reports[1.0]["subnormal"] > 0.05 and reports[1.0]["99.9th pct. rel. error"] > 0.01
for s in (2.0**10, safe_scale):
    assert reports[s]["subnormal"] < 0.01 and reports[s]["overflowed"] == 0
    assert reports[s]["99.9th pct. rel. error"] <= 1.01 * unit_roundoff
lost = grads[(grads * np.float32(safe_scale)).astype(np.float16) == 0]
print(f"still flushed at scale {safe_scale:.0f}: {lost.size} gradients, the largest "
      f"{np.abs(lost).max():.1e}, {np.abs(lost).max() / largest:.0e} of the largest gradient")  # fmt: skip
assert np.abs(lost).max() < 1e-10 * largest
assert reports[4 * safe_scale]["overflowed"] > 0  # too large a scale overflows
bf16_error = np.abs(to_bfloat16(grads) - grads) / np.abs(grads)
print(f"bfloat16, no scale: flushed {np.mean(to_bfloat16(grads) == 0):.0%}, "
      f"largest relative error {bf16_error.max():.1e}")  # fmt: skip
assert np.all(to_bfloat16(grads) != 0) and bf16_error.max() <= 2**-8

# %% [markdown]
# Unscaled, a large share of these gradients (the subnormal column of the first row) falls
# into float16's subnormal range, where the relative error grows far beyond float16's normal
# rounding (the last column), and a few become zero. **Loss scaling** {cite}`micikevicius2018`
# multiplies the loss by a factor $s$ before the backward pass; by the chain rule every
# gradient is multiplied by $s$, which lifts them into float16's normal range, and the
# optimizer divides by $s$ in float32 before the update. A power of two changes only the
# exponent, so the scaling itself is exact. With $s = 2^{10}$, or with the largest power of two
# that keeps the largest gradient finite, fewer than 1 % of the gradients remain subnormal
# and 99.9 % keep float16's full precision, $2^{-11}$. The few that still flush to zero are
# more than ten orders of magnitude smaller than the largest gradient: rounding residue that
# could not move a weight anyway. Four times the largest safe scale, and some gradients
# overflow to infinity.
#
# Since the right scale changes during training, mixed-precision trainers choose it
# dynamically: start high; when a step's gradients contain an infinity or a NaN, skip that
# step and halve $s$; after a run of good steps, double it. bfloat16 avoids the problem: its
# range is float32's, nothing is flushed, and every gradient is rounded to 8 significant bits
# (relative error at most $2^{-8}$), which is why bfloat16 training usually needs no loss
# scaling.
#
# The other half of mixed precision is where the weights live. An update is a small change to
# a weight of ordinary size, and a 16-bit weight cannot hold small changes:

# %%
weight, update = 1.0, 1e-3
print(f"float32:  {np.float32(weight) - np.float32(update)!r}")
print(f"float16:  {np.float16(weight) - np.float16(update)!r}")
print(f"bfloat16: {to_bfloat16(to_bfloat16(weight) - to_bfloat16(update))!r}")
assert np.float32(weight) - np.float32(update) != 1
assert to_bfloat16(to_bfloat16(weight) - to_bfloat16(update)) == 1  # the update is lost

# %% [markdown]
# The update of 0.001 survives in float32, is rounded to a nearby float16 value, and vanishes
# entirely in bfloat16, whose neighbouring values near 1 are several thousandths apart.
# Mixed-precision training therefore keeps a float32 **master copy** of the weights, updates
# it in float32, and rounds it to 16 bits for the next forward pass; the AdamW moments stay in
# float32 too. `lmcore` trains in float32 (with TF32 matrix products on request). The two
# PyTorch rungs of the ladder above, where the record has them, compare TF32 with bfloat16
# autocast on the same model:

# %%
torch_bf16 = rung("bf16")
if torch_tf32 and torch_bf16:
    print(f"PyTorch eager: bfloat16 autocast {torch_bf16['tokens_per_s'] / 1e6:.2f} M tokens/s, "
          f"TF32 {torch_tf32['tokens_per_s'] / 1e6:.2f} M ({SOURCE})")  # fmt: skip

# %% [markdown]
# The two are close at this model size, and which one wins is not a property to state
# without measuring: 16-bit formats speed up the matrix products and halve the bytes of
# memory-bound kernels, but autocast adds conversion kernels (more launches, each a pass over
# memory), and the matrix products of a 10-million-parameter model are small. On the device
# of the record, repeated runs of the benchmark put one or the other ahead by tens of
# percent, so the chapter prints the numbers of the run it read and asserts nothing about
# their order.
#
# ## Results
#
# What this chapter runs in each profile:
#
# | part | `quick` (CI, CPU) | `standard` (CPU) | `full` (GPU) |
# |---|---|---|---|
# | NumPy references against `lmcore`'s autograd, float64 | small shapes | larger shapes | as `standard` |
# | online softmax, tiled attention, loss scaling (NumPy) | contexts up to 1,024 | up to 2,048 | as `standard` |
# | CUDA compiled to PTX with NVRTC | where NVRTC is installed | same | same |
# | GPU measurements | the recorded run | the recorded run | measured live (`lmcore bench gpu`) |
#
# On a GPU in the `quick` profile the benchmark runs at small sizes, where launch costs blur
# the comparisons, and the chapter asserts no comparison of speeds there. Every reference
# agrees with autograd to $10^{-11}$ or better in every profile (asserted above). The cell
# below prints this run's numbers and those of the GPU run it read.

# %%
print(f"profile {PROFILE} on {DEVICE}; GPU numbers from {SOURCE} on {device['name']}")
print(f"  NumPy checks: largest difference {max(errors.values()):.1e} over {len(errors)} checks")
print(f"  tiled attention peak memory at T = {contexts[-1]}: "
      f"{peaks['tiled, 32 keys at a time'][-1] / peaks['full T x T (reference)'][-1]:.1%} of the full one")  # fmt: skip
summary = []
for family, op in (("gelu", "forward"), ("softmax", "forward"), ("layernorm", "forward"),
                   ("layernorm", "residual + forward"), ("layernorm", "backward"),
                   ("attention_softmax", "forward"), ("cross_entropy", "forward"),
                   ("adamw", "step")):  # fmt: skip
    rows_ = [r for r in kernel_rows(family, op) if r["version"] != "cupy"]
    if not rows_:
        continue
    fastest = min(rows_, key=lambda r: r["ms"])
    generic_ms = timing(family, op, "cupy")
    summary.append({
        "kernel": f"{family} {op}", "best": fastest["version"], "ms": fastest["ms"],
        "of copy bandwidth": f"{fastest['fraction_of_copy']:.0%}",
        "vs CuPy generic": "-" if generic_ms is None else f"{generic_ms / fastest['ms']:.1f}x",
    })  # fmt: skip
summary.append({
    "kernel": f"matmul {kernel_rows('matmul')[0]['shape']}", "best": "v3",
    "ms": timing("matmul", "forward", "v3"),
    "of copy bandwidth": "-", "vs CuPy generic": f"{matmul_rate['v3'] / matmul_rate['cuBLAS']:.0%} of cuBLAS",
})  # fmt: skip
print_table(summary, title=f"kernels ({SOURCE})")
print(f"  training: {generic['tokens_per_s'] / 1e6:.2f} M tokens/s generic, "
      f"{kernels['tokens_per_s'] / 1e6:.2f} M with the kernels"
      + (f", PyTorch eager TF32 {torch_tf32['tokens_per_s'] / 1e6:.2f} M" if torch_tf32 else ""))  # fmt: skip

# %% [markdown]
# ## Summary
#
# - A GPU runs a kernel as a grid of thread blocks; each block runs on one streaming
#   multiprocessor as warps of 32 threads executing together. Many resident warps hide the
#   latency of global memory. Registers, shared memory and the L2 cache sit between the
#   threads and global memory.
# - A kernel's time is bounded by its flops over the arithmetic peak and by its bytes over
#   the memory bandwidth. Every kernel here except the matrix product does about one flop per
#   byte or less, far left of the ridge: memory-bound, so the aim is to move each byte once,
#   at a large share of the bandwidth.
# - The means: coalesced access (a warp reads contiguous memory; one row per thread wastes
#   most of each sector), wide loads, warp shuffles instead of shared memory and barriers,
#   the online softmax (max and sum in one pass, mergeable in any order), fusion (one kernel
#   for a whole formula, for an add and the LayerNorm after it, for a softmax and its loss),
#   recomputation instead of storage (LayerNorm's $\hat x$, cross-entropy's probabilities,
#   attention's $P$), and fewer launches (multi-tensor AdamW).
# - A matrix product climbs towards the compute roof by reuse: shared-memory tiles cut
#   global loads, register blocking cuts shared loads; cuBLAS, with more of the same and with
#   tensor cores, stays ahead.
# - Attention needs neither $S$ nor $P$ in memory: the online softmax extended with a rescaled
#   output accumulator gives the exact result tile by tile, the backward pass recomputes $P$
#   from the saved log-sum-exp, and $\delta_i = dO_i \cdot O_i$. Memory then grows with $T$,
#   not $T^2$. In time, `lmcore`'s one-query-per-thread kernels lose to cuBLAS-based
#   attention at every context measured; winning in time too takes the tensor cores.
# - Wired into `lmcore`'s operations, the kernels speed up a whole training step by the factor
#   measured above, and leave the losses unchanged to within the asserted tolerances.
#   PyTorch's eager mode is still faster, and the CPU now needs about as long to issue a step
#   as the GPU to run it: launch overhead is the next cost to attack (CUDA graphs, fewer
#   and larger kernels).
# - float16 needs loss scaling, or small gradients are lost; bfloat16 has float32's range but
#   only 8 significant bits; both need a float32 master copy of the weights.
#
# What the chapter leaves out: programming the tensor cores directly, asynchronous copies
# and the other tricks of production kernels; compilers that fuse kernels automatically
# (Triton, `torch.compile`); and many GPUs, the subject of a later chapter.

# %% [markdown]
# ## Exercises
#
# **1.** A LayerNorm forward pass over the shape of the measured LayerNorm benchmark reads the
# input once and writes the output once. What is the least time it can take at the measured
# copy bandwidth (ignore the weights, and the mean and rstd it saves), and what share of that
# floor did the best kernel reach?

# %% tags=["hide-cell"]
# Solution: 8 bytes an element (4 read, 4 written), over the copy bandwidth; the share is
# floor / measured time, which is the `fraction_of_copy` the benchmark reports.
ln_rows = kernel_rows("layernorm", "forward")
ln_shape = [int(s) for s in re.findall(r"\d+", ln_rows[0]["shape"])]
floor_ms = 8 * math.prod(ln_shape) / bandwidth * 1e3
best_ln = min((r for r in ln_rows if r["version"] != "cupy"), key=lambda r: r["ms"])
print(f"shape {tuple(ln_shape)}: floor {floor_ms:.3f} ms; {best_ln['version']} took {best_ln['ms']:.3f} ms, "
      f"{floor_ms / best_ln['ms']:.0%} of the way to the floor")  # fmt: skip
assert abs(floor_ms / best_ln["ms"] - best_ln["fraction_of_copy"]) < 0.02

# %% [markdown]
# **2.** Write the merge of two online-softmax states in NumPy, split a row of 1,000 numbers
# into chunks of random sizes, compute each chunk's state, merge the states in a random order,
# and check that the result is the row's log-sum-exp. Why may the order be random?

# %% tags=["hide-cell"]
# Solution: merging rescales both sums to the larger maximum and adds them; it is associative
# and commutative (max is, and each sum is always expressed relative to the current max), so
# any split and any order give the same (m, s) up to rounding.
row = rng.standard_normal(1000) * 10
cuts = np.sort(rng.choice(np.arange(1, 1000), size=12, replace=False))
states = [(c.max(), np.exp(c - c.max()).sum()) for c in np.split(row, cuts)]
order = rng.permutation(len(states))
m_total, s_total = -np.inf, 0.0
for i in order:
    m_total, s_total = merge(m_total, s_total, *states[i])
lse = row.max() + np.log(np.exp(row - row.max()).sum())
print(
    f"merged {len(states)} chunks in random order: {m_total + np.log(s_total):.12f}, two-pass {lse:.12f}"
)
assert abs(m_total + np.log(s_total) - lse) < 1e-12

# %% [markdown]
# **3.** Count the bytes that the attention softmax moves for $B = 8$, $H = 12$, $T = 1024$ in
# float32: (a) on the generic path, where scaling, masking, the maximum, the subtraction, the
# exponential, the sum and the division are separate passes over the $(B, H, T, T)$ scores;
# (b) with the fused `attention_softmax_forward` kernel; (c) with the flash kernels. How long
# would each take at the measured copy bandwidth?

# %% tags=["hide-cell"]
# Solution: per element of the (B, H, T, T) array, in 4-byte reads (r) and writes (w):
# scale r+w, mask r+w, max r, subtract r+w, exp r+w, sum r, divide r+w: 12 accesses, 48 bytes.
# The fused kernel reads the scores once and writes the weights once: 8 bytes. The flash
# kernels move no (T, T) array at all: only q, k, v read and o written, 4 (B, H, T, 64) arrays.
B_, H_, T_, D_ = 8, 12, 1024, 64
elements = B_ * H_ * T_ * T_
traffic = {
    "generic passes": 12 * 4 * elements,
    "fused softmax kernel": 2 * 4 * elements,
    "flash (q, k, v, o)": 4 * 4 * B_ * H_ * T_ * D_,
}
for name, nbytes in traffic.items():
    print(
        f"{name:22s} {nbytes / 2**30:7.3f} GiB, {nbytes / bandwidth * 1e3:7.3f} ms at the copy bandwidth"
    )
assert traffic["generic passes"] == 6 * traffic["fused softmax kernel"]
assert traffic["fused softmax kernel"] == T_ / (2 * D_) * traffic["flash (q, k, v, o)"]

# %% [markdown]
# **4.** Write the backward pass of attention tile by tile in NumPy, as the flash kernels do:
# from $Q$, $K$, $V$, $dO$ and the saved $\text{lse}$ only, recompute $P$ one tile of keys at a
# time, accumulate $dQ$, $dK$, $dV$, and check them against `reference.attention_backward`.


# %% tags=["hide-cell"]
# Solution: delta = rowsum(dO * O) first; then for each key tile, P = exp(tau q k^T - lse),
# dV += P^T dO, dS = P (dO V^T - delta), dQ += tau dS K, dK += tau dS^T Q.
def tiled_attention_backward(q, k, v, out, lse, grad, tile: int = 32):
    tq, tk = len(q), len(k)
    scale = 1 / math.sqrt(q.shape[1])
    delta = (grad * out).sum(axis=1)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    visible = np.arange(tq)[:, None] + (tk - tq)
    for j0 in range(0, tk, tile):
        keys = slice(j0, j0 + tile)
        s = scale * q @ k[keys].T
        p = np.where(j0 + np.arange(s.shape[1]) <= visible, np.exp(s - lse[:, None]), 0.0)
        dv[keys] = p.T @ grad
        ds = p * (grad @ v[keys].T - delta[:, None])
        dq += scale * ds @ k[keys]
        dk[keys] = scale * ds.T @ q
    return dq, dk, dv


tiled_grads = tiled_attention_backward(q64, k64, v64, out_tiled, lse_tiled, dO)
reference_grads = reference.attention_backward(q64, k64, v64, dO)
print("largest difference:", max(np.abs(a - b).max() for a, b in zip(tiled_grads, reference_grads)))
assert all(np.allclose(a, b, rtol=0, atol=1e-11) for a, b in zip(tiled_grads, reference_grads))

# %% [markdown]
# **5.** In `matmul_v1`, the 32 threads of a warp share `threadIdx.y` (one row of $C$) and have
# consecutive `threadIdx.x` (32 neighbouring columns). At step `i` of the loop, how many
# 32-byte sectors does the warp's load of `a` touch, and its load of `b`? What does that say
# about where version 1 loses its time?

# %% tags=["hide-cell"]
# Solution: every lane reads the same a[row * k + i] (one sector, broadcast to all lanes),
# and b[i * n + col] for 32 consecutive columns (4 sectors, all bytes used). Both loads are
# efficient; what v1 lacks is reuse: every multiply-add needs two loads, so it is bound by
# load bandwidth (from the caches, mostly), not by arithmetic. Tiling fixes the reuse.
k_, n_, row_, i_ = 4096, 4096, 17, 5
cols_ = 64 + lanes  # the warp's 32 columns
a_addresses = 4 * np.full(32, row_ * k_ + i_)
b_addresses = 4 * (i_ * n_ + cols_)
print(f"a: {sectors(a_addresses)} sector, b: {sectors(b_addresses)} sectors")
assert sectors(a_addresses) == 1 and sectors(b_addresses) == 4
