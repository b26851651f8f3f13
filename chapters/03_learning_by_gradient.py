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
# # Learning by gradient
#
# Chapter 2 ended at a wall. An n-gram model treats every context as an atom, so what it learns
# about *thy sweet* tells it nothing about *thy gentle*, and beyond a handful of characters its
# counts run dry. The way through is a model whose predictions are a smooth function of
# millions of adjustable numbers, so that similar contexts get similar predictions, and a way
# to adjust those numbers: follow the gradient of the loss downhill.
#
# This chapter builds that machinery and trains the first neural language model with it. Every
# later model in the book, from the LSTM to the GPT, is trained by the code met here.
#
# **In this chapter you will**
#
# - go from the derivative of one function to the chain rule on a graph of operations, and
#   build a scalar automatic differentiation engine in a few lines;
# - see why real engines work on arrays, how broadcasting shapes their gradients, and read
#   the engine in `lmcore`;
# - check gradients against finite differences, see why that needs float64, and watch a
#   wrong backward pass get caught;
# - train the MLP language model of Bengio et al. on Shakespeare and compare it with the
#   n-gram models of chapter 2;
# - measure how initialization shapes the signals in a deep network, compare SGD, momentum
#   and Adam, find a learning rate, and draw the schedules;
# - overfit on purpose and cure it with dropout, weight decay and early stopping;
# - stop a run, resume it from a checkpoint, and get exactly the same numbers;
# - look at what the learned character vectors have in common.

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
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from safetensors import safe_open

import lmcore
from lmcore import autograd, config, data, diagrams, nn, optim
from lmcore import functional as F
from lmcore.autograd import Function, Tensor
from lmcore.data.batches import RandomWindows, SequentialWindows
from lmcore.gradcheck import gradcheck
from lmcore.models.mlp import MLPLanguageModel
from lmcore.ngram import NGramLM
from lmcore.notebook import show
from lmcore.tokenizers import CharTokenizer
from lmcore.train import NonFiniteLossError, Trainer, evaluate, train

PROFILE = config.profile()
lmcore.notebook.setup()

# %% [markdown]
# ## From one derivative to the chain rule on a graph
#
# Training a model means changing its parameters $\theta$ so that a loss $L(\theta)$, the
# average surprise of chapter 2 on the training text, goes down. For a single parameter, the
# derivative says which way is down and how steep it is:
#
# $$
# L'(\theta) = \lim_{h \to 0} \frac{L(\theta + h) - L(\theta)}{h},
# \qquad
# \theta \leftarrow \theta - \eta\, L'(\theta),
# $$
#
# where the small positive **learning rate** $\eta$ sets the size of the step. With many
# parameters, the derivative becomes the **gradient** $\nabla_\theta L$, the vector of partial
# derivatives, and the same step moves all of them at once. That is gradient descent.
#
# A model's loss is not one formula but a long composition of simple operations: look up a
# vector, multiply by a matrix, add, squash, exponentiate, take a log. The **chain rule**
# differentiates a composition: if $y = f(u)$ and $u = g(x)$, then
#
# $$
# \frac{\partial y}{\partial x} = \frac{\partial y}{\partial u}\,\frac{\partial u}{\partial x}.
# $$
#
# Each operation needs to know only its own *local* derivative. Draw the computation as a
# graph, with a node per operation and an edge for each value passed on; the derivative of
# the output with respect to any value is the sum, over every path from that value to the
# output, of the product of local derivatives along the path. When a value is used twice,
# its two paths add:
#
# $$
# \frac{\partial L}{\partial x} = \sum_{\text{uses } u \text{ of } x}
# \frac{\partial L}{\partial u}\,\frac{\partial u}{\partial x}.
# $$
#
# Computing those sums one input at a time would repeat work. **Reverse mode**
# differentiation, better known as backpropagation {cite}`rumelhart1986`, does them all in one
# sweep from the output backwards: visit the nodes so that each comes after everything that
# uses it, and hand each one the finished gradient of the loss with respect to its output,
# $\partial L / \partial u$; it multiplies by its local derivatives and passes the products on
# to its inputs. One backward sweep costs about as much as the forward computation, however
# many parameters there are, which is what makes training models with millions of them
# possible.
#
# ## A scalar autograd in a few lines
#
# That is all there is to it, and it fits in a small class. Each `Scalar` holds a number, the
# scalars it was computed from, and the local derivative with respect to each; `backward`
# orders the graph so that every node comes after its inputs (a depth-first topological
# sort, with an explicit stack rather than recursion, so that a long chain of operations
# cannot exceed Python's recursion limit), then walks it in reverse, accumulating gradients.
# This is a teaching toy for this page only; `lmcore`'s engine, below, does the same on
# arrays.


# %%
class Scalar:
    """A number that remembers how it was computed (a toy: lmcore.Tensor is the real engine)."""

    def __init__(self, value, parents=(), local_grads=()):
        self.value, self.parents, self.local_grads, self.grad = value, parents, local_grads, 0.0

    def __add__(self, other):
        return Scalar(self.value + other.value, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        return Scalar(self.value * other.value, (self, other), (other.value, self.value))

    def tanh(self):
        t = math.tanh(self.value)
        return Scalar(t, (self,), (1 - t * t,))

    def backward(self):
        order, seen, stack = [], set(), [(self, False)]
        while stack:  # depth first: a node goes into the order after all of its inputs
            node, inputs_done = stack.pop()
            if inputs_done:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((parent, False) for parent in node.parents)
        self.grad = 1.0
        for node in reversed(order):  # the output first, each node before its inputs
            for parent, local in zip(node.parents, node.local_grads):
                parent.grad += local * node.grad  # chain rule; uses of a value add up


# %% [markdown]
# A single neuron, $y = \tanh(w_1 x_1 + w_2 x_2 + b)$, followed by $L = y \cdot y + y$, which
# uses $y$ twice. Backpropagation gives all five partial derivatives at once; we compare each
# with a **finite difference**, nudging one input by a tiny $h$ on both sides and measuring
# the change in $L$.


# %%
def neuron_loss(x1, x2, w1, w2, b):
    y = (w1 * x1 + w2 * x2 + b).tanh()
    return y * y + y


values = {"x1": 0.5, "x2": -1.5, "w1": 0.8, "w2": 0.3, "b": 0.1}
leaves = {name: Scalar(v) for name, v in values.items()}
loss = neuron_loss(*leaves.values())
loss.backward()


def loss_at(**changes):
    return neuron_loss(*(Scalar(v) for v in (values | changes).values())).value


h = 1e-6
for name, leaf in leaves.items():
    numeric = (loss_at(**{name: values[name] + h}) - loss_at(**{name: values[name] - h})) / (2 * h)
    print(f"dL/d{name:2s} = {leaf.grad:+.6f}  (finite difference {numeric:+.6f})")
    assert abs(leaf.grad - numeric) < 1e-6

# %% [markdown]
# ## Why tensors
#
# The toy keeps one Python object per number and one per operation on numbers. A language
# model does millions of multiplications per step, and Python spends about a microsecond on
# each object it makes, so the toy would need seconds for what the hardware does in
# microseconds. The fix is to make each node of the graph an operation on a whole **array**:
# a matrix product, an element-wise tanh over a batch. The graph then has tens of nodes
# instead of millions, and the arithmetic inside each node runs in NumPy's compiled loops
# (or, on a GPU, in CuPy's kernels). Here is one dot product of 10,000 numbers both ways:

# %%
rng = np.random.default_rng(0)
a_np, b_np = rng.standard_normal(10_000), rng.standard_normal(10_000)

start = time.perf_counter()
a_toy, b_toy = [Scalar(v) for v in a_np], [Scalar(v) for v in b_np]
total = Scalar(0.0)
for a, b in zip(a_toy, b_toy):
    total = total + a * b
total.backward()
toy_s = time.perf_counter() - start

start = time.perf_counter()
a_t, b_t = Tensor(a_np, requires_grad=True), Tensor(b_np, requires_grad=True)
dot = (a_t * b_t).sum()
dot.backward()
tensor_s = time.perf_counter() - start

print(f"scalars: {toy_s * 1e3:.1f} ms, tensors: {tensor_s * 1e3:.3f} ms, {toy_s / tensor_s:.0f}x")
assert np.allclose(a_t.grad, b_np) and math.isclose(a_toy[7].grad, b_np[7])
assert toy_s > 10 * tensor_s

# %% [markdown]
# Same gradients ($\partial (a \cdot b) / \partial a = b$), and far faster: tens of times on
# the 2-core machine this book is built on (this run's factor is printed above; the assert
# asks for more than 10), and the gap widens with the size of the arrays.
#
# ## The engine in `lmcore`
#
# `lmcore.autograd` has three pieces, in the style of Chainer and its teaching descendant
# DeZero. A `Tensor` wraps a NumPy (or CuPy) array, `.data`, and remembers the `Function` that
# made it, `.creator`. A `Function` is one operation written on raw arrays: `forward` computes
# the output and saves what the backward pass will need; `backward` receives
# $\partial L / \partial \text{output}$ and returns $\partial L / \partial \text{input}$ for
# each input. Here is one, tanh, whose local derivative is $1 - \tanh^2$:

# %%
show(F.Tanh)

# %% [markdown]
# Calling a function runs `forward` on the arrays and, when an input requires a gradient,
# records the function as the creator of its output; that record *is* the graph:

# %%
show(Function.__call__)

# %% [markdown]
# The graph can be drawn straight from those records. Here is the one behind the loss of a
# one-layer network, $\text{loss} = \operatorname{CE}(\tanh(xW + b), y)$: the leaves on
# the left (the input and the two parameters), each operation in orange with the tensor it
# made, the loss on the right. `backward` walks the arrows from right to left.

# %%
x_small = Tensor(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
W_small = Tensor(np.zeros((3, 5), np.float32), requires_grad=True)
b_small = Tensor(np.zeros(5, np.float32), requires_grad=True)
small_loss = F.cross_entropy(F.tanh(x_small @ W_small + b_small), np.array([0, 1, 2, 3]))
graph_nodes, graph_edges = diagrams.graph_of(small_loss, {"x": x_small, "W": W_small, "b": b_small})
diagrams.draw_graph(small_loss, {"x": x_small, "W": W_small, "b": b_small})
plt.show()
operations = [node.label for node in graph_nodes if node.kind == "op"]
print("operations recorded:", operations)
assert operations == ["MatMul", "Add", "Tanh", "CrossEntropy"]

# %% [markdown]
# `Tensor.backward` then does what the toy did. The topological sort is the same depth-first
# search with an explicit stack, which matters for real models too: a recurrent network
# unrolled over a long text (chapter 4) makes a graph thousands of operations deep. It also
# says what went wrong when a graph has already been freed by an earlier backward pass:

# %%
show(autograd._topological_order)

# %% [markdown]
# The gradients travel in a dictionary of pending sums rather than in a `.grad` field on
# every intermediate tensor, so each intermediate gradient is freed as soon as it has been
# used; only the leaves (the parameters, and inputs you marked with `requires_grad=True`)
# keep theirs:

# %%
show(autograd.run_backward, between=("pending: dict", ".release()"))

# %% [markdown]
# A leaf's `.grad` is a `Tensor` holding its gradient, of the leaf's shape and dtype, as in
# PyTorch; it wraps the summed array without copying it, so what you do to it in place, the
# optimizer sees. Gradients add up across backward passes, which is what accumulating several
# micro-batches wants and what a hand-written training loop must undo: it updates the weights
# under `no_grad()`, so that the update itself records no graph, and then clears the
# gradient with `p.grad.zero_()` (or drops it with `p.grad = None`, as `zero_grad()` does):

# %%
w = Tensor([1.0, -2.0], requires_grad=True)
for step in range(2):
    (w * w).sum().backward()  # d/dw of w . w is 2w
    print(f"step {step}: w.grad = {w.grad}")
    with lmcore.no_grad():
        w -= 0.25 * w.grad  # w <- w - lr * 2w: halves w
        w.grad.zero_()
print("w =", w)
assert np.allclose(w, [0.25, -0.5]) and not w.grad.numpy().any()

# %% [markdown]
# ## Broadcasting, and the gradients it needs
#
# Array code leans on **broadcasting**: adding a bias vector of shape (D,) to a batch of shape
# (B, D) adds it to every row, as if it had been copied B times. The chain rule has a clear
# answer for the gradient: a value used B times gets the sum of the gradients of its B uses.
# So the backward pass of a broadcast operation must **sum the incoming gradient over the
# axes that broadcasting stretched** (or added), to give back an array of the input's shape.
# `lmcore` does this in one helper, used by every binary operation:

# %%
show(F.common._unbroadcast)

# %% [markdown]
# Check it on a bias added to a batch of four rows, and on an outer product made by
# broadcasting a column (4, 1) against a row (1, 3):

# %%
x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
bias = Tensor(rng.standard_normal(3), requires_grad=True)
weights = rng.standard_normal((4, 3))  # a fixed upstream gradient dL/dy
((x + bias) * weights).sum().backward()
print("bias.grad          =", bias.grad.numpy().round(4))
print("weights.sum(axis=0) =", weights.sum(axis=0).round(4))
assert bias.grad.shape == (3,) and np.allclose(bias.grad, weights.sum(axis=0))

column = Tensor(rng.standard_normal((4, 1)), requires_grad=True)
row = Tensor(rng.standard_normal((1, 3)), requires_grad=True)
(column * row * weights).sum().backward()
assert np.allclose(column.grad, (weights * row.data).sum(axis=1, keepdims=True))
assert np.allclose(row.grad, (weights * column.data).sum(axis=0, keepdims=True))
print("column.grad:", column.grad.shape, " row.grad:", row.grad.shape)

# %% [markdown]
# ## Gradient checking
#
# A backward pass is hand-written code, and hand-written code has bugs. A bug in a gradient is
# treacherous: nothing crashes, the loss still goes down a bit, just less than it should. The
# defence is to compare every analytic gradient with a numerical one. The **central
# difference**
#
# $$
# \frac{\partial L}{\partial x} \approx \frac{L(x + \epsilon) - L(x - \epsilon)}{2\epsilon}
# $$
#
# has an error of order $\epsilon^2$ (the terms of odd order in the Taylor series cancel),
# far better than the one-sided difference's $\epsilon$. But $\epsilon$ cannot be made
# arbitrarily small: the two values of $L$ agree in their leading digits, and the subtraction
# leaves only the trailing ones, whose rounding error, about $\delta |L| / \epsilon$ for a
# machine precision $\delta$, grows as $\epsilon$ shrinks. The best $\epsilon$ balances the
# two, near $\delta^{1/3}$, and leaves an error of order $\delta^{2/3}$. In float32
# ($\delta \approx 6 \times 10^{-8}$) that is a relative error of a few parts in a million at
# best, too coarse to tell a right gradient from a subtly wrong one once the errors of a whole
# network add up; in float64 ($\delta \approx 10^{-16}$) it is below $10^{-10}$.

# %%
point, exact = 0.7, 1 - math.tanh(0.7) ** 2
epsilons = np.logspace(-12, 0, 49)
errors = {}
for dtype in (np.float32, np.float64):
    x0, e = dtype(point), epsilons.astype(dtype)
    estimate = (np.tanh(x0 + e) - np.tanh(x0 - e)) / (2 * e)
    errors[dtype.__name__] = np.abs(estimate.astype(np.float64) - exact) / exact
fig, ax = plt.subplots()
for name, err in errors.items():
    ax.loglog(epsilons, np.maximum(err, 1e-17), "o-", ms=3, label=name)
ax.set_xlabel(r"step $\epsilon$")
ax.set_ylabel("relative error of the central difference")
ax.set_title(r"Finite differences of $\tanh$ at 0.7: truncation vs rounding")
ax.legend()
plt.show()
best = {name: err.min() for name, err in errors.items()}
print({name: f"{b:.1e} at eps={epsilons[errors[name].argmin()]:.0e}" for name, b in best.items()})
assert best["float64"] < 1e-9 < 1e-6 < best["float32"]

# %% [markdown]
# On the right of each V the truncation error falls as $\epsilon^2$; on the left the rounding
# error rises as $1/\epsilon$. Float32 bottoms out about six orders of magnitude above
# float64. So `lmcore.gradcheck` converts every input to float64 first, perturbs each element
# in turn, and compares. It also reduces the outputs to one number with fixed *random*
# weights, $L = \sum_i r_i y_i$, rather than a plain sum, for a reason we will see in a
# moment.

# %%
show(gradcheck, between=("inputs = [_float64", "return True"))

# %% [markdown]
# The operations this chapter's model is made of pass, among them the fused ones with
# hand-derived backward passes (softmax cross-entropy straight from the logits, and layer
# normalization), and matrix products and additions that broadcast:

# %%
g = np.random.default_rng(1)
targets = g.integers(0, 5, size=6)
ids = g.integers(0, 7, size=(3, 4))
checks = {
    "tanh": (lambda t: t.tanh(), [(6, 5)]),
    "matmul + broadcast add": (lambda a, w, b: a @ w + b, [(4, 3), (3, 5), (5,)]),
    "mean over an axis": (lambda t: t.mean(dim=0), [(4, 3)]),
    "cross_entropy": (lambda t: F.cross_entropy(t, targets), [(6, 5)]),
    "layer_norm": (lambda t, w, b: F.layer_norm(t, (5,), w, b), [(4, 5), (5,), (5,)]),
    "embedding": (lambda table: F.embedding(ids, table), [(7, 3)]),
}
for name, (fn, shapes) in checks.items():
    inputs = [Tensor(g.standard_normal(s), requires_grad=True) for s in shapes]
    assert gradcheck(fn, *inputs)
    print(f"gradcheck passed: {name}")

# %% [markdown]
# What does a failure look like? Here is a new operation, softplus,
# $y = \ln(1 + e^x)$, whose derivative is the sigmoid $\sigma(x) = 1 / (1 + e^{-x})$. Its
# author wrote the right local derivative but forgot to multiply by the incoming gradient,
# the most common bug of all in hand-written backward passes:


# %%
class BuggySoftplus(Function):
    def forward(self, x):
        self.x = x
        return np.logaddexp(0, x)  # ln(1 + e^x), without overflow

    def backward(self, grad):
        return 1 / (1 + np.exp(-self.x))  # BUG: should be grad * sigmoid(x)


x = Tensor(np.random.default_rng(2).standard_normal((3, 4)), requires_grad=True)
BuggySoftplus()(x).sum().backward()
print(
    "after .sum().backward(), x.grad looks right:", np.allclose(x.grad, 1 / (1 + np.exp(-x.data)))
)
try:
    gradcheck(lambda t: BuggySoftplus()(t), x)
except AssertionError as err:
    message = str(err)
    print("gradcheck:", message)
assert "is wrong at element" in message

# %% [markdown]
# The plain sum hides the bug: its upstream gradient is exactly 1 everywhere, and multiplying
# by 1 is the one case where forgetting to multiply does no harm. That is why `gradcheck`
# weights the outputs randomly: then the upstream gradient is different for every element,
# and the check names the input, the element that is furthest off, and both values. The fix is
# one `grad *`, and then the check passes:


# %%
class Softplus(BuggySoftplus):
    def backward(self, grad):
        return grad / (1 + np.exp(-self.x))


assert gradcheck(lambda t: Softplus()(t), x)

# %% [markdown]
# ## The MLP language model
#
# Now a model worth differentiating. Bengio, Ducharme, Vincent and Jauvin {cite}`bengio2003`
# replaced the counts of an n-gram model with a neural network, and in doing so brought in
# the two ideas every neural language model since has used: each token gets a learned vector, its
# **embedding**, and the probability of the next token is a smooth function of the vectors of
# the context. To predict the character after a window of $n - 1 = k$ characters
# $c_1, \dots, c_k$:
#
# $$
# \begin{aligned}
# x &= [\,E_{c_1}; E_{c_2}; \dots; E_{c_k}\,] && \text{look up and concatenate: } k \cdot d \text{ numbers} \\
# h &= \tanh(W_1 x + b_1) && \text{hidden layer of width } H \\
# z &= W_2 h + b_2, \qquad P(c \mid c_1, \dots, c_k) = \operatorname{softmax}(z)_c
#   = \frac{e^{z_c}}{\sum_{v} e^{z_v}} && \text{one logit per symbol}
# \end{aligned}
# $$
#
# $E$ is a $V \times d$ table with one row per symbol, shared by all the positions of the
# window. The loss is the cross-entropy of chapter 2, $-\ln P(\text{next} \mid
# \text{context})$, averaged over a batch. The window is fixed, exactly like an n-gram's, so
# a model with $k = 5$ sees what a 6-gram model sees. The difference is in how it
# generalises: characters that behave alike get nearby embeddings, contexts made of similar
# characters produce similar hidden vectors, and what the model learns from one context
# carries over to its neighbours, including contexts it never saw. (Bengio et al. also added
# direct connections from $x$ to the output; `lmcore` leaves them out, as most modern
# descriptions do.) In `lmcore`:

# %%
show(MLPLanguageModel.forward)

# %% [markdown]
# ### The gradient of softmax cross-entropy
#
# Every model from here on ends in the same two steps, a softmax over logits $z$ and the
# negative log-probability of the true class $y$, and their gradient is short enough to derive
# once. For one example, $\ell = -\ln \operatorname{softmax}(z)_y = -z_y + \ln \sum_v e^{z_v}$.
# The first term depends only on $z_y$; the derivative of the second with respect to $z_j$ is
# $e^{z_j} / \sum_v e^{z_v} = \operatorname{softmax}(z)_j$. So
#
# $$
# \frac{\partial \ell}{\partial z_j} = \operatorname{softmax}(z)_j - [j = y],
# \qquad
# \frac{\partial L}{\partial Z} = \frac{1}{B}\bigl(\operatorname{softmax}(Z) -
#   \operatorname{onehot}(y)\bigr)
# $$
#
# for the mean $L$ over a batch of $B$ rows: the predicted distribution minus the target
# distribution, divided by the batch size. The gradient is zero exactly when the model puts
# all its probability on the right answer, and each wrong class is pushed down in proportion
# to the probability it took. Summed over a corpus, the same expression is zero when the
# predicted probabilities equal the observed frequencies: minimizing cross-entropy is
# maximizing the likelihood, as chapter 2's bigram trained by gradient descent showed. The
# formula against autograd's answer for lmcore's `cross_entropy`:

# %%
rng = np.random.default_rng(0)
Z = Tensor(rng.standard_normal((6, 5)), requires_grad=True)  # float64: B = 6 rows, 5 classes
targets = np.array([0, 4, 2, 2, 1, 3])
F.cross_entropy(Z, targets).backward()
softmax = np.exp(Z.numpy() - Z.numpy().max(1, keepdims=True))
softmax /= softmax.sum(1, keepdims=True)
by_hand = (softmax - np.eye(5)[targets]) / len(targets)
print(f"largest difference from the formula: {np.abs(Z.grad.numpy() - by_hand).max():.1e}")
assert np.allclose(Z.grad.numpy(), by_hand, rtol=0, atol=1e-15)

# %% [markdown]
# `lmcore` does not reach that result through a softmax, a log and an indexing operation,
# each with its own backward pass: `CrossEntropy` is one operation that keeps the softmax from
# its forward pass and writes the formula directly (the lines about label smoothing and class
# weights, which later chapters use, add their own terms):

# %%
show(F.CrossEntropy.backward)

# %% [markdown]
# The data are chapter 2's: the training plays for training, three held-out plays for
# validation, characters as tokens. The `quick` profile takes slices of both so that the
# chapter runs in seconds. Each example is a window of five characters and the character after
# it; `RandomWindows` draws batches of them at random positions from a seeded generator, and
# `SequentialWindows` visits every window of the validation text once, for an exact score.

# %%
train_text, val_text = data.shakespeare("train"), data.shakespeare("val")
chars = CharTokenizer(train_text)  # the alphabet of all the training plays, in every profile
train_text = train_text[: config.pick(quick=500_000, standard=len(train_text))]
val_text = val_text[: config.pick(quick=50_000, standard=len(val_text))]
train_ids = np.array(chars.encode(train_text))  # int64 (T,)
val_ids = np.array(chars.encode(val_text))
V = chars.vocab_size
CONTEXT = 5  # characters of context: the model sees what a 6-gram model sees
x, y = next(RandomWindows(train_ids, CONTEXT, batch_size=3, seed=0))
for window, target in zip(x.tolist(), y.tolist()):
    print(f"{chars.decode(window)!r:>9} -> {chars.decode([target])!r}")
print(f"{len(train_ids):,} training and {len(val_ids):,} validation characters, {V} symbols")

# %% [markdown]
# Before any training, the model should be maximally unsure. With small random weights the
# logits are close to each other, the softmax is close to uniform, and the loss should be
# close to $\ln V$. A much larger initial loss would mean confident wrong guesses, which
# training must first unlearn.

# %%
EMBED = config.pick(quick=16, standard=32, full=64)
HIDDEN = config.pick(quick=256, standard=512, full=2048)
lmcore.manual_seed(0)
model = MLPLanguageModel(V, CONTEXT, embed_dim=EMBED, hidden=HIDDEN)
print(model)
print(f"{model.num_parameters():,} parameters")
val_windows = SequentialWindows(val_ids, CONTEXT, batch_size=8192)
initial = evaluate(model, val_windows)
print(f"validation loss before training: {initial:.3f} nats/char; ln V = {math.log(V):.3f}")
assert abs(initial - math.log(V)) < 0.5

# %% [markdown]
# `lmcore.train.train` runs the loop that every chapter from here on uses: draw a batch,
# compute the loss, backpropagate, optionally clip the gradient norm, step the optimizer and
# the learning-rate schedule, and every so often measure the validation loss with the graph
# turned off. It builds a `Trainer`, whose parts each do one thing; the heart of it is one
# step:

# %%
show(Trainer.step)

# %% [markdown]
# We train with AdamW, a learning rate that warms up and then decays along a cosine (both
# explained below), and batches of 512 windows (128 in `quick`, 2048 in `full`); a progress
# bar shows the loss as it goes.

# %%
STEPS = config.pick(quick=1_500, standard=12_000, full=30_000)
BATCH = config.pick(quick=128, standard=512, full=2048)
LR = 3e-3
lmcore.manual_seed(0)
model = MLPLanguageModel(V, CONTEXT, embed_dim=EMBED, hidden=HIDDEN)
opt = optim.AdamW(optim.weight_decay_groups(model, 0.01), lr=LR)
schedule = optim.LambdaLR(opt, optim.WarmupCosine(200, STEPS, min_factor=0.05))
start = time.perf_counter()
history = train(
    model,
    opt,
    RandomWindows(train_ids, CONTEXT, BATCH, seed=0),
    steps=STEPS,
    scheduler=schedule,
    val_batches=val_windows,
    eval_every=STEPS // 10,
)
mlp_train_s = time.perf_counter() - start
mlp_val = history.val_loss[-1]
print(history)
print(f"{STEPS:,} steps in {mlp_train_s:.0f} s; validation loss {mlp_val:.3f} nats/char")
history.plot(title=f"MLP language model, context {CONTEXT}")
plt.show()
assert history.val_loss[-1] < history.val_loss[-2] < history.val_loss[0]  # still improving

# %% [markdown]
# The loss falls steeply for the first few hundred steps, while the model learns which
# characters are common and which pairs go together, and then slowly; the validation loss
# follows the training loss down, a little above it, because the validation plays are new
# text.
#
# ## The MLP against counting
#
# How good is it? We score three models on exactly the same validation characters (every one
# after the first five): the unigram model, which ignores the context and is the baseline any
# model must beat; the modified Kneser-Ney 6-gram, the best counting model of chapter 2, which
# sees the same five characters as the MLP; and the MLP.

# %%
unigram = NGramLM(1, "mle").fit(train_ids, V)
kneser_ney = NGramLM(CONTEXT + 1, "modified_kneser_ney").fit(train_ids, V)
scores = {
    "unigram": -unigram.logprobs(val_ids)[CONTEXT:].mean(),  # -ln P of each character, averaged
    f"{CONTEXT + 1}-gram, modified Kneser-Ney": -kneser_ney.logprobs(val_ids)[CONTEXT:].mean(),
    f"MLP, context {CONTEXT}": evaluate(model, val_windows),
}
print(f"{'model':34s} {'nats/char':>9s} {'bits/char':>9s} {'perplexity':>10s}")
for name, nats in scores.items():
    print(f"{name:34s} {nats:9.3f} {nats / math.log(2):9.3f} {math.exp(nats):10.2f}")
unigram_score, ngram_score, mlp_score = scores.values()
assert mlp_score < unigram_score - 1.0
assert mlp_score < ngram_score + config.pick(quick=0.6, standard=0.2)

# %% [markdown]
# The MLP is far ahead of the unigram baseline, more than a nat per character, so it makes
# good use of its context. Against the 6-gram it does not win yet: with all the training
# plays (`standard`) the 6-gram is about 0.12 nats per character better; on the `quick` slice,
# with an eighth of the text and a much shorter run, the gap is larger. A 6-gram with
# Kneser-Ney smoothing on four million characters is a strong model: nine in ten validation
# 6-grams occur in the training text (chapter 2), and for those, counting is hard to beat.
# The MLP has about 120,000 parameters, has seen each training window about once and a half,
# and its loss was still falling when training stopped. Characters also favour counting:
# with 76 symbols, four million characters fill the tables of a 6-gram densely. Bengio et al.
# worked with words, where a vocabulary of thousands makes the tables far sparser, and there
# their network, especially when mixed with a trigram model, beat the best smoothed n-gram
# models. The recurrent and attention models of the next chapters keep the network's way of
# generalising and drop the fixed window, and that is where neural models pull away for good.
#
# The `full` profile, meant for a GPU, gives the same five characters of context to a much
# larger MLP (embeddings of 64, a hidden layer of 2,048, about 0.8 million parameters) and
# trains it for 30,000 steps of 2,048 windows, some fifteen passes over the training plays.
# It should narrow the gap to the 6-gram further, though a window of five characters caps
# what any model can do with it; the book has no measured number for it yet, and the cell
# above prints the one of your run.
#
# Here is what the MLP writes, sampling one character at a time from its softmax, five
# characters of context at a time, with the sampler of `lmcore.generate` that chapter 2's
# n-gram models used (`generate` feeds the model its last five characters at each step):


# %%
sample = model.generate(np.array([chars.encode("KING HENRY:\n")]), 300, seed=0)  # (1, 12 + 300)
print(chars.decode(sample[0].tolist()))

# %% [markdown]
# Words, speakers' names, line breaks and punctuation in the right places; sense, no. Five
# characters are the whole of its memory.
#
# ## Initialization: keeping the signal alive
#
# Before the first step, every weight has to have a value, and the choice matters more than it
# seems. Take a deep stack of layers $a^{(l)} = \phi(W^{(l)} a^{(l-1)})$ of width $n$. If the
# entries of $a^{(l-1)}$ have variance $s^2$ and those of $W^{(l)}$ are independent with
# variance $\sigma^2$, each pre-activation is a sum of $n$ products and has variance
# $n \sigma^2 s^2$. Unless $n \sigma^2$ is close to 1 (adjusted for what $\phi$ does to the
# variance), the signal grows or shrinks geometrically with depth, and so, on the way back,
# does the gradient. Two classic choices fix it:
#
# - **Xavier** (Glorot) initialization {cite}`glorot2010`,
#   $\sigma^2 = 2 / (n_\text{in} + n_\text{out})$, a compromise between keeping the forward
#   and the backward variance, derived for activations like tanh that are linear near zero
#   (we multiply the standard deviation by tanh's *gain*, 5/3 from
#   `nn.init.calculate_gain("tanh")`, as one does in PyTorch, to make up for its flat tails);
# - **He** (Kaiming) initialization {cite}`he2015`, $\sigma^2 = 2 / n_\text{in}$, for ReLU,
#   which zeroes half of its inputs and so halves the variance, hence the 2.
#
# And a bad one: weights drawn from $N(0, 1)$, so $n\sigma^2 = n$. We build ten layers of
# width 256, push a batch of random inputs through, and record, for each layer, the spread of
# its activations and of the gradient of a random loss with respect to them. The gradient with
# respect to an intermediate value is not kept by the engine, so we add a zero leaf tensor to
# each activation: its gradient is exactly the gradient of the activation.

# %%
show(nn.init.xavier_normal_)

# %%
DEPTH, WIDTH = 10, 256


def signal_statistics(init, activation, seed=0):
    """Per layer: the activations (as an array) and the std of dL/d(activation)."""
    lmcore.manual_seed(seed)
    layers = [nn.Linear(WIDTH, WIDTH, bias=False, device="cpu") for _ in range(DEPTH)]
    for layer in layers:
        init(layer.weight)
    g = np.random.default_rng(seed)
    h = Tensor(g.standard_normal((256, WIDTH)).astype(np.float32))
    taps, activations = [], []
    for layer in layers:
        tap = Tensor(np.zeros((256, WIDTH), np.float32), requires_grad=True)
        h = getattr(layer(h), activation)() + tap  # + 0, but tap.grad = dL/dh
        taps.append(tap)
        activations.append(h.numpy())
    (h * Tensor(g.standard_normal(h.shape).astype(np.float32))).sum().backward()
    return activations, [float(t.grad.numpy().std()) for t in taps]


inits = {
    "tanh": {
        "N(0, 1)": lambda w: nn.init.normal_(w, 0.0, 1.0),
        "N(0, 0.01²)": lambda w: nn.init.normal_(w, 0.0, 0.01),
        "Xavier, gain 5/3": lambda w: nn.init.xavier_normal_(w, nn.init.calculate_gain("tanh")),
    },
    "relu": {
        "N(0, 1)": lambda w: nn.init.normal_(w, 0.0, 1.0),
        "Xavier, gain 1": lambda w: nn.init.xavier_normal_(w),
        "He": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    },
}
stats = {
    (act, name): signal_statistics(init, act)
    for act, group in inits.items()
    for name, init in group.items()
}

fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
layer_numbers = np.arange(1, DEPTH + 1)
for row, act in enumerate(inits):
    for name in inits[act]:
        acts, grads = stats[act, name]
        axes[row, 0].semilogy(layer_numbers, [a.std() for a in acts], "o-", ms=3, label=name)
        axes[row, 1].semilogy(layer_numbers, grads, "o-", ms=3, label=name)
    axes[row, 0].set_ylabel(f"{act} network")
    axes[row, 0].set_title("std of activations")
    axes[row, 1].set_title("std of gradient w.r.t. activations")
    for ax in axes[row, :2]:
        ax.set_xlabel("layer")
        ax.legend(fontsize=7)
for name, color in (("N(0, 1)", "C0"), ("Xavier, gain 5/3", "C2")):
    axes[0, 2].hist(stats["tanh", name][0][-1].ravel(), bins=60, alpha=0.6, color=color, label=name)
axes[0, 2].set_title("tanh activations of the last layer")
axes[0, 2].legend(fontsize=7)
for name, color in (("Xavier, gain 1", "C1"), ("He", "C2")):
    values = stats["relu", name][0][-1].ravel()
    axes[1, 2].hist(values[values > 0], bins=60, alpha=0.6, color=color, label=name)
axes[1, 2].set_title("positive ReLU activations, last layer")
axes[1, 2].legend(fontsize=7)
fig.tight_layout()
plt.show()


# %%
def saturated(acts):
    return float((np.abs(acts[-1]) > 0.99).mean())


def spread(values):  # ratio of the last layer's std to the first's
    return values[-1] / values[0]


tanh_n01, tanh_xavier = stats["tanh", "N(0, 1)"], stats["tanh", "Xavier, gain 5/3"]
relu_n01, relu_he = stats["relu", "N(0, 1)"], stats["relu", "He"]
print(f"tanh, N(0,1): {saturated(tanh_n01[0]):.0%} of last-layer units saturated (|a| > 0.99)")
print(f"tanh, Xavier: {saturated(tanh_xavier[0]):.0%} saturated")
for (act, name), (acts, grads) in stats.items():
    stds = [float(a.std()) for a in acts]
    print(
        f"{act:4s} {name:17s} activation std layer 1 -> {DEPTH}: {stds[0]:9.3g} -> {stds[-1]:9.3g}"
        f"   gradient std layer 1 / layer {DEPTH}: {spread(grads[::-1]):9.3g}"
    )
assert saturated(tanh_n01[0]) > 0.5 > 0.05 > saturated(tanh_xavier[0])
assert spread(tanh_n01[1][::-1]) > 1e3 and 0.3 < spread(tanh_xavier[1][::-1]) < 5
assert spread([a.std() for a in stats["tanh", "N(0, 0.01²)"][0]]) < 1e-6
assert spread([a.std() for a in relu_n01[0]]) > 1e6
assert 0.5 < spread([a.std() for a in relu_he[0]]) < 2 and 0.3 < spread(relu_he[1][::-1]) < 3
assert spread([a.std() for a in stats["relu", "Xavier, gain 1"][0]]) < 0.1

# %% [markdown]
# Each failure has its own signature:
#
# - **tanh with $N(0, 1)$**: the pre-activations have a standard deviation of about
#   $\sqrt{256} = 16$, so most units sit on a flat tail of tanh, at $\pm 1$ (the two spikes
#   of the histogram). The activations look healthy in size, but a saturated unit has a local
#   derivative $1 - \tanh^2$ near zero and barely learns, and the gradient is wildly uneven
#   across layers: the few unsaturated units pass it back through weights 16 times too large,
#   so it grows about threefold per layer on the way down, and the first layer gets ten
#   thousand times the gradient of the last. No single learning rate suits all of them.
# - **tanh with $N(0, 0.01^2)$**: each layer multiplies the spread by about
#   $0.01 \sqrt{256} = 0.16$, so after ten layers the signal has vanished, and the gradient
#   vanishes on its way back just the same.
# - **ReLU with $N(0, 1)$**: each layer multiplies the spread by about $\sqrt{256 / 2} \approx
#   11$, so the activations explode by ten orders of magnitude, and so do the gradients.
# - **ReLU with Xavier**: a slow leak. Xavier's variance is half of what ReLU needs, so the
#   spread shrinks by about $\sqrt 2$ per layer, a factor 30 over ten layers.
#
# Xavier with tanh's gain and He with ReLU keep both the activations and the gradients at the
# same scale from the first layer to the last, within a factor of about two. Our MLP language
# model has a single hidden layer, so it is forgiving; the deep Transformers of later chapters
# are not, and they add normalization layers and residual connections on top of careful
# initialization. `lmcore`'s
# layers use PyTorch's defaults: a `Linear` draws its weights from
# $U(-1/\sqrt{n_\text{in}}, 1/\sqrt{n_\text{in}})$, a variance of $1/(3 n_\text{in})$, on the
# small side of Xavier, and an `Embedding` draws from $N(0, 1)$.
#
# ## Optimizers: SGD, momentum and Adam
#
# Plain **stochastic gradient descent** (SGD) takes a step against the gradient of one batch:
# $\theta \leftarrow \theta - \eta g$. The batch gradient $g$ is a noisy estimate of the true
# gradient, and the loss surface of a network has directions of very different curvature, so
# one learning rate is too large for some directions (the parameters oscillate across a
# narrow valley) and too small for others (they crawl along its floor).
#
# **Momentum** keeps a running sum of past gradients, $m \leftarrow \mu m + g$, and steps
# along it, $\theta \leftarrow \theta - \eta m$ {cite}`polyak1964`. Gradients that keep their
# sign add up, to a step $1 / (1 - \mu)$ times larger (10 times for $\mu = 0.9$); gradients
# that flip sign cancel out. **Adam** {cite}`kingma2015` keeps a running mean of the gradient,
# $m$, and of its square, $v$, both corrected for starting at zero, and divides:
#
# $$
# \theta \leftarrow \theta - \eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon},
# \qquad \hat m = \frac{m}{1 - \beta_1^t}, \quad \hat v = \frac{v}{1 - \beta_2^t}.
# $$
#
# Each parameter gets its own step size: a parameter with consistently small gradients (the
# embedding of a rare character, say) moves as fast as one with large ones, about $\eta$ per
# step, which makes Adam far less sensitive to the scale of the gradients than SGD. In
# `lmcore`, each optimizer defines the update of one parameter:

# %%
show(optim.SGD.update)

# %%
show(optim.Adam.update)

# %% [markdown]
# We train the same model, from the same initialization and on the same batches, with each
# of the three. Comparing them at one learning rate would only tell us which of them that
# rate suits, so each gets three rates, a factor of three apart, around a rate that works for
# it, and we compare each at its best. (Momentum's rates are ten times smaller than plain
# SGD's because, with $\mu = 0.9$, its steps are ten times longer.) A smaller model than the
# main run's keeps this to seconds.

# %%
OPT_STEPS = config.pick(quick=350, standard=1_500)
optimizers = {
    "SGD": (lambda params, lr: optim.SGD(params, lr=lr), [0.3, 1.0, 3.0]),
    "SGD + momentum 0.9": (
        lambda params, lr: optim.SGD(params, lr=lr, momentum=0.9),
        [0.03, 0.1, 0.3],
    ),
    "Adam": (lambda params, lr: optim.Adam(params, lr=lr), [1e-3, 3e-3, 1e-2]),
}
runs = {}
for name, (make, rates) in optimizers.items():
    for lr in rates:
        lmcore.manual_seed(0)
        net = MLPLanguageModel(V, CONTEXT, embed_dim=16, hidden=256)
        batches = RandomWindows(train_ids, CONTEXT, 128, seed=1)
        runs[name, lr] = train(net, make(net.parameters(), lr), batches, OPT_STEPS, progress=False)


def smooth(values, width=50):
    return np.convolve(values, np.ones(width) / width, mode="valid")


def final_loss(run):  # mean training loss over the last tenth of the steps
    return float(np.mean(run.train_loss[-OPT_STEPS // 10 :]))


best_rate = {
    name: min(rates, key=lambda lr: final_loss(runs[name, lr]))
    for name, (_, rates) in optimizers.items()
}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
for i, (name, (_, rates)) in enumerate(optimizers.items()):
    run = runs[name, best_rate[name]]
    ax1.plot(
        run.step[49:],
        smooth(run.train_loss),
        color=f"C{i}",
        label=f"{name}, lr {best_rate[name]:g}",
    )
    ax2.semilogx(
        rates, [final_loss(runs[name, lr]) for lr in rates], "o-", color=f"C{i}", label=name
    )
ax1.set_xlabel("step")
ax1.set_ylabel("training loss (mean of 50 steps)")
ax1.set_ylim(top=3.5)
ax1.set_title("Each optimizer at its best learning rate")
ax1.legend()
ax2.set_xlabel("learning rate")
ax2.set_ylabel("final training loss")
ax2.set_title("Final loss against learning rate")
ax2.legend(fontsize=8)
fig.tight_layout()
plt.show()
best_loss = {name: final_loss(runs[name, best_rate[name]]) for name in optimizers}
for name, value in best_loss.items():
    print(f"{name:20s} best learning rate {best_rate[name]:<6g} final training loss {value:.3f}")
sgd_final, momentum_final, adam_final = best_loss.values()
assert adam_final < momentum_final < sgd_final

# %% [markdown]
# Each at its best, Adam is clearly ahead, and momentum is a little ahead of plain SGD. The
# right-hand plot shows why the comparison needs a sweep: each optimizer's loss rises on both
# sides of its best rate, and plain SGD at 1 and momentum at 0.1, which take steps of the same
# length on a steady gradient, end up close; momentum's gain is that it smooths the noise of
# the batches. Adam's advantage on this model comes largely from the embeddings: a
# character's row of $E$ gets a gradient only when the character is in the window, rare
# characters rarely, and Adam's per-parameter scaling gives those rows full-size steps when
# they do (exercise 3).
#
# **AdamW** {cite}`loshchilov2019` is Adam with *decoupled* weight decay, the optimizer we
# trained the language model with and the one later chapters use. Weight decay pulls every
# weight towards zero a little at each step, a regularizer we meet again below. Adam with an
# L2 penalty adds $\lambda\theta$ to the gradient, which then goes through the division by
# $\sqrt{\hat v}$, so weights with large gradients are barely decayed; AdamW shrinks the
# weights directly, by the same factor for all of them:

# %%
show(optim.AdamW.apply_weight_decay)

# %% [markdown]
# ## Finding a learning rate
#
# The learning rate is the most important setting of all, and the **learning-rate range
# test** {cite}`smith2017` finds a good one in a few hundred steps: start with a tiny rate,
# multiply it by a constant factor after every step, and record the loss. At first the rate is
# too small to change anything; then the loss starts to fall, faster and faster; then the
# steps become too large, the loss stops improving and finally blows up. A good learning rate
# lies where the loss falls fastest, somewhat below the point where it is lowest; a common
# rule is a tenth of the rate at the minimum.

# %%
RANGE_STEPS = config.pick(quick=200, standard=400)
lrs = np.logspace(-5, 0, RANGE_STEPS)
RANGE_SHAPE = dict(embed_dim=min(EMBED, 32), hidden=min(HIDDEN, 512))  # full: standard's model
lmcore.manual_seed(0)
net = MLPLanguageModel(V, CONTEXT, **RANGE_SHAPE)
range_opt = optim.Adam(net.parameters(), lr=1.0)
range_schedule = optim.LambdaLR(range_opt, lambda step: lrs[min(step, RANGE_STEPS - 1)])
range_history = train(
    net,
    range_opt,
    RandomWindows(train_ids, CONTEXT, 256, seed=2),
    RANGE_STEPS,
    scheduler=range_schedule,
    progress=False,
)
range_loss = smooth(np.array(range_history.train_loss), 10)
range_lr = np.array(range_history.lr)[9:]  # the learning rate at the last step of each mean
lowest = int(np.argmin(range_loss))
suggested = range_lr[lowest] / 10
fig, ax = plt.subplots()
ax.semilogx(range_lr, range_loss)
ax.axvline(range_lr[lowest], color="C3", ls=":", label=f"lowest loss, lr = {range_lr[lowest]:.1e}")
ax.axvline(suggested, color="C2", ls="--", label=f"a tenth of it, lr = {suggested:.1e}")
ax.set_ylim(range_loss.min() - 0.3, range_loss[0] + 1.0)  # the loss goes far higher at the end
ax.set_xlabel("learning rate (Adam)")
ax.set_ylabel("training loss (mean of 10 steps)")
ax.set_title("Learning-rate range test")
ax.legend()
plt.show()
print(
    f"lowest loss {range_loss[lowest]:.3f} at lr {range_lr[lowest]:.2e}; suggested lr {suggested:.1e}"
)
assert range_loss[lowest] < range_loss[0] - 0.5 and range_loss[-1] > range_loss[0] + 1.0
assert 3e-3 < range_lr[lowest] < 0.1
assert 3e-4 < suggested < 3e-2

# %% [markdown]
# The curve is flat at the left, falls as the rate grows, is lowest at a rate near
# $10^{-2}$, and then climbs, ending far above where it started as the rate approaches 1 (the
# plot cuts the end off). The suggested rate is within a factor of ten of the
# $3 \times 10^{-3}$ we trained with, which the optimizer comparison also found best of its
# three: the test and its rule of a tenth are a quick, somewhat cautious guide, not a law.
#
# What happens when the rate is far too large is worth seeing too, and it teaches something
# about computing the loss. With plain SGD at a rate of 10, the weights of the output layer
# grow so fast that within a few steps the logits differ by hundreds, and the softmax gives
# some characters a probability that rounds to exactly zero in float32. Written naively, as a
# softmax followed by a log, the loss of such a character is $-\ln 0 = \infty$. The fused
# `cross_entropy` computes $\ln \operatorname{softmax}(z)_c = z_c - \ln \sum_v e^{z_v}$
# directly, subtracting the largest logit before exponentiating, so it never takes the log of
# a rounded-off zero: its loss is large, as it should be, but finite. Either way, `train`
# checks every loss and gradient norm, and stops *before* a bad step can change the weights
# or overwrite a checkpoint, with an error that says what to do:


# %%
def naive_loss(model, x, y):
    probs = model(x).softmax(dim=-1)  # (B, V)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the point here
        rows = lmcore.backend.get_array_module(y).arange(len(y))
        return -probs[rows, y].log().mean()


outcomes = {}
for name, loss_fn in (("fused cross_entropy", None), ("softmax, then log", naive_loss)):
    lmcore.manual_seed(0)
    net = MLPLanguageModel(V, CONTEXT, **RANGE_SHAPE)
    batches = RandomWindows(train_ids, CONTEXT, 256, seed=0)
    try:
        run = train(
            net, optim.SGD(net.parameters(), lr=10.0), batches, 20, loss_fn=loss_fn, progress=False
        )
        outcomes[name] = f"finished; largest loss {max(run.train_loss):.1f}"
    except NonFiniteLossError as err:
        outcomes[name] = f"stopped at step {err.step}: {err}"
for name, outcome in outcomes.items():
    print(f"{name}: {outcome}")
assert outcomes["fused cross_entropy"].startswith("finished")
assert outcomes["softmax, then log"].startswith("stopped")

# %% [markdown]
# ## Learning-rate schedules
#
# A constant rate is a compromise: large steps make fast progress early, but late in training
# they keep the parameters bouncing around a minimum instead of settling into it. So rates
# are scheduled. Two common shapes:
#
# - **Step decay**: multiply the rate by a factor $\gamma$ (often 0.1) every so many steps.
# - **Warmup and cosine decay** {cite}`loshchilov2017`: raise the rate linearly from near
#   zero over the first $W$ steps, then lower it along half a cosine to a small floor at the
#   end of training. The warmup protects the first steps, when Adam's estimates of $v$ are
#   based on a handful of gradients and the network is far from anything sensible; the cosine
#   spends most of the run at high rates and slows down smoothly at the end. It is the
#   schedule of GPT-style pretraining, and the one we used above.
#
# A schedule in `lmcore` is a small callable, `factor = schedule(step)`, that `LambdaLR`
# multiplies with the base rate after every step; it can be drawn on its own:

# %%
show(optim.WarmupCosine.__call__)

# %%
total = 1_000
cosine = optim.WarmupCosine(warmup_steps=100, total_steps=total, min_factor=0.1)
step_decay = optim.StepDecay(step_size=300, gamma=0.3)
steps = np.arange(total + 1)
fig, ax = plt.subplots()
ax.plot(steps, [cosine(s) for s in steps], label=repr(cosine))
ax.plot(steps, [step_decay(s) for s in steps], label=repr(step_decay))
ax.set_xlabel("step")
ax.set_ylabel("learning rate / base learning rate")
ax.set_title("Learning-rate schedules")
ax.legend(fontsize=8)
plt.show()
assert cosine(0) == 0.01 and cosine(99) == 1.0 and math.isclose(cosine(total), 0.1)
assert step_decay(299) == 1.0 and math.isclose(step_decay(300), 0.3)

# %% [markdown]
# ## Overfitting, and three cures
#
# With enough parameters, a network can memorise its training data instead of learning what
# generalises. To see it, we train a model with about 50,000 parameters on a small slice of
# the training plays (4,000 characters in `quick`, 20,000 in `standard`), passing over it
# about ten times, and follow the loss on the training slice and on the validation plays.
# Then we try the three standard cures:
#
# - **Dropout** {cite}`srivastava2014`: during training, zero each hidden unit with
#   probability $p$ and scale the survivors by $1 / (1 - p)$, so that no unit can rely on any
#   particular other one; at evaluation, use all units. `MLPLanguageModel(dropout=p)` applies
#   it to the hidden layer.
# - **Weight decay**: shrink the weights towards zero at every step (AdamW's
#   `weight_decay`), which keeps the function the network computes simpler.
# - **Early stopping**: keep evaluating, and stop when the validation loss has not improved
#   for a few evaluations; then return the weights of the best evaluation. `train(patience=k)`
#   does this with `EarlyStopping`.

# %%
SMALL = config.pick(quick=4_000, standard=20_000)
small_ids = train_ids[:SMALL]
small_val = SequentialWindows(val_ids[: config.pick(quick=10_000, standard=50_000)], CONTEXT, 8192)
FIT_STEPS = config.pick(quick=600, standard=3_000)


def overfit_run(dropout=0.0, weight_decay=0.0, patience=None):
    lmcore.manual_seed(0)
    net = MLPLanguageModel(V, CONTEXT, embed_dim=24, hidden=256, dropout=dropout)
    run = train(
        net,
        optim.AdamW(optim.weight_decay_groups(net, weight_decay), lr=2e-3),
        RandomWindows(small_ids, CONTEXT, 64, seed=0),
        FIT_STEPS,
        val_batches=small_val,
        eval_every=FIT_STEPS // 20,
        patience=patience,
        progress=False,
    )
    return net, run


cures = {
    "no regularization": {},
    "dropout 0.5": {"dropout": 0.5},
    "weight decay 1.0": {"weight_decay": 1.0},
    "early stopping, patience 3": {"patience": 3},
}
fits = {name: overfit_run(**kwargs) for name, kwargs in cures.items()}
fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, sharey=True)
for ax, (name, (_, run)) in zip(axes.ravel(), fits.items()):
    run.plot(ax=ax, title=name)
    ax.set_ylim(0.5, 3.5)
fig.tight_layout()
plt.show()

# %%
rows = {}
for name, (net, run) in fits.items():
    rows[name] = {
        "train": float(np.mean(run.train_loss[-FIT_STEPS // 20 :])),
        "final val": evaluate(net, small_val),
        "best val": run.best[1],
        "steps": run.step[-1],
    }
    r = rows[name]
    print(
        f"{name:27s} train {r['train']:.3f}  validation at the end {r['final val']:.3f}"
        f"  (best {r['best val']:.3f})  steps {r['steps']}"
    )
plain, dropped, decayed, stopped = rows.values()
assert plain["train"] < plain["final val"] - 0.5  # a wide gap: memorised
assert plain["final val"] > plain["best val"] + 0.1  # and the validation loss turned up
assert dropped["final val"] < plain["final val"] - 0.1
assert decayed["final val"] < plain["final val"] - 0.1
assert stopped["steps"] < FIT_STEPS and math.isclose(
    stopped["final val"], stopped["best val"], rel_tol=1e-6
)

# %% [markdown]
# Without regularization, the model learns the slice by heart: its training loss falls far
# below any loss a model of Shakespeare can honestly reach, while the validation loss bottoms
# out early and then climbs, as the model grows confident about details of the slice that
# the validation plays do not share. Dropout and weight decay both narrow the gap and end
# with a clearly lower validation loss, at the price of a higher training loss. Early
# stopping does not change the training at all; it stops soon after the validation loss has
# turned, and hands back the weights of the best evaluation (the validation loss measured
# after training equals the best one recorded). With a large data set, as in the main run
# above, none of this was needed: there the model saw each window once or twice, and the
# validation loss followed the training loss down.
#
# ## Checkpoints and exact resumption
#
# Long runs get interrupted: a machine is reclaimed, a notebook disconnects. A **checkpoint**
# saves everything needed to carry on, and "everything" is more than the weights: the
# optimizer's moment estimates, the schedule's step, the state of the batch sampler's random
# generator, the generator that draws dropout masks, the history so far. Miss any one and a
# resumed run quietly diverges from the one that was interrupted. `lmcore.train` saves all of
# them in one safetensors file, written atomically (to a temporary file, then renamed), so a
# crash in the middle of writing leaves the previous checkpoint whole:

# %%
show(Trainer.__init__, between=("# Everything a checkpoint saves", "self.start = load_checkpoint"))

# %% [markdown]
# The test is strict: train a model with dropout for 2N steps in one go; separately, train the
# same model for N steps with a checkpoint and stop, as if the machine had died; then build
# everything afresh, resume from the checkpoint, and continue to 2N. The two runs must agree
# exactly, to the last bit, in every loss and every weight.

# %%
RESUME_STEPS = config.pick(quick=60, standard=400)
resume_val = SequentialWindows(val_ids[:20_000], CONTEXT, 8192)
# Checkpoints save NumPy's random state but not CuPy's, so on a GPU the resumed dropout masks
# would differ; there the demonstration runs without dropout.
RESUME_DROPOUT = 0.2 if lmcore.backend.device() == "cpu" else 0.0


def resumable_run(steps, checkpoint=None, resume_from=None):
    lmcore.manual_seed(0)
    net = MLPLanguageModel(V, CONTEXT, embed_dim=16, hidden=128, dropout=RESUME_DROPOUT)
    opt = optim.AdamW(optim.weight_decay_groups(net, 0.1), lr=3e-3)
    scheduler = optim.LambdaLR(opt, optim.WarmupCosine(RESUME_STEPS // 10, RESUME_STEPS))
    run = train(
        net,
        opt,
        RandomWindows(train_ids, CONTEXT, 64, seed=3),
        steps,
        scheduler=scheduler,
        val_batches=resume_val,
        eval_every=RESUME_STEPS // 4,
        checkpoint=checkpoint,
        resume_from=resume_from,
        progress=False,
    )
    return net, run


with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "mlp.safetensors"
    straight_net, straight = resumable_run(RESUME_STEPS)
    resumable_run(RESUME_STEPS // 2, checkpoint=path)  # ... and the machine dies here
    with safe_open(path, framework="numpy") as file:
        names = list(file.keys())
        print(f"checkpoint at step {file.metadata()['step']}: {len(names)} arrays, e.g.")
        for name in names[:2] + [n for n in names if "exp_avg" in n][:2]:
            print(f"  {name:38s} {file.get_tensor(name).shape}")
    resumed_net, resumed = resumable_run(RESUME_STEPS, checkpoint=path, resume_from=path)

print(f"training losses equal: {straight.train_loss == resumed.train_loss}")
print(
    f"validation losses: {[round(v, 4) for v in straight.val_loss]} / {[round(v, 4) for v in resumed.val_loss]}"
)
assert straight.train_loss == resumed.train_loss and straight.val_loss == resumed.val_loss
for (name, a), b in zip(straight_net.state_dict().items(), resumed_net.state_dict().values()):
    assert np.array_equal(a, b), name
print("every weight is identical")

# %% [markdown]
# Every loss and every weight is identical: the resumed run drew the same batches and the
# same dropout masks, and took the same optimizer steps. Its history also carries the first
# half of the curve, read back from the checkpoint.
#
# ## What the embeddings learned
#
# Each character's row of $E$ is a point in a space of 32 dimensions (16 in `quick`), placed
# by training wherever it helped to predict the next character. Characters that play similar
# roles in the text should end up pointing in similar directions. Two cautions before
# looking. Rare characters (digits, `Q`, `z`) get a gradient only in the few batches that
# contain them, so their rows are still close to their random starting points and say
# nothing; we keep the characters that make up at least one in 2,000 of the training text.
# And the length of a row says more about how much it was trained than about its role, so we
# compare directions, with the cosine similarity of the rows.
#
# To draw them, we project the unit-length rows onto the two directions along which they vary
# most, the first two **principal components**: centre the rows, take the singular value
# decomposition $X - \bar X = U S V^\top$, and plot the first two columns of $U S$.

# %%
embeddings = model.embedding.weight.numpy().astype(np.float64)  # (V, EMBED)
unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
counts = np.bincount(train_ids, minlength=V)
frequent = np.flatnonzero(counts >= len(train_ids) / 2000)
centred = unit[frequent] - unit[frequent].mean(axis=0)
U, S, _ = np.linalg.svd(centred, full_matrices=False)
coords = U[:, :2] * S[:2]
explained = S[:2] ** 2 / (S**2).sum()

groups = {
    "vowels": set("aeiouAEIOU"),
    "capital consonants": set("BCDFGHJKLMNPQRSTVWXYZ"),
    "lower-case consonants": set("bcdfghjklmnpqrstvwxyz"),
    "punctuation": set(".,;:!?'-&()[]\"_"),
    "space and newline": {" ", "\n"},
}
colors = dict(zip(groups, ("C3", "C0", "C2", "C1", "C7")))
fig, ax = plt.subplots(figsize=(8, 6.5))
for (x0, y0), i in zip(coords, frequent):
    c = chars.itos[i]
    group = next((g for g, members in groups.items() if c in members), None)
    ax.text(x0, y0, repr(c)[1:-1], color=colors.get(group, "k"), ha="center", va="center")
for group, color in colors.items():
    ax.plot([], [], "s", color=color, label=group)
ax.set_xlim(coords[:, 0].min() - 0.1, coords[:, 0].max() + 0.1)
ax.set_ylim(coords[:, 1].min() - 0.1, coords[:, 1].max() + 0.1)
ax.set_xlabel(f"first principal component ({explained[0]:.0%} of the variance)")
ax.set_ylabel(f"second principal component ({explained[1]:.0%})")
ax.set_title(f"Embeddings of the {len(frequent)} most frequent characters, projected to 2-D")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Two dimensions keep only part of the picture, so we check what the plot suggests in the full
# space: the mean cosine similarity within and between groups, and each character's nearest
# neighbours among the frequent characters.


# %%
def similarity(a: str, b: str) -> float:
    """Mean cosine similarity between the characters of a and those of b (distinct pairs)."""
    sims = unit[chars.encode(a)] @ unit[chars.encode(b)].T
    return float(sims[~np.eye(len(a), dtype=bool)].mean() if a == b else sims.mean())


def neighbours(c: str, k: int = 5) -> list[str]:
    order = np.argsort(-(unit[frequent] @ unit[chars.encode(c)[0]]))
    return [chars.itos[frequent[j]] for j in order if chars.itos[frequent[j]] != c][:k]


VOWELS, CONSONANTS, PUNCTUATION = "aeiou", "bcdfghlmnprstwy", ".,;:!?"
LETTERS = VOWELS + CONSONANTS
sims = {
    "vowel - vowel": similarity(VOWELS, VOWELS),
    "vowel - consonant": similarity(VOWELS, CONSONANTS),
    "vowel - punctuation": similarity(VOWELS, PUNCTUATION),
    "punctuation - punctuation": similarity(PUNCTUATION, PUNCTUATION),
    "punctuation - lower-case letter": similarity(PUNCTUATION, LETTERS),
}
for name, value in sims.items():
    print(f"mean cosine similarity {name:32s} {value:+.3f}")
for c in " \n.,aeTs":
    print(f"nearest to {c!r:5s}", " ".join(repr(n) for n in neighbours(c)))
pairs = [c for c in LETTERS if counts[chars.encode(c.upper())[0]] >= len(train_ids) / 2000]
case_pairs = [c for c in pairs if c.upper() in neighbours(c, 3)]
print(f"lower-case letters with their capital among their 3 nearest: {case_pairs} of {len(pairs)}")
assert sims["punctuation - punctuation"] > sims["punctuation - lower-case letter"] + 0.2
assert sims["vowel - vowel"] > max(sims["vowel - consonant"], sims["vowel - punctuation"])
assert neighbours("\n", 1) == [" "]
assert len(case_pairs) >= config.pick(quick=3, standard=len(pairs) // 2 + 1, full=3)

# %% [markdown]
# The model was never told what a vowel or a punctuation mark is, and yet:
#
# - the punctuation marks form the clearest group, with much more in common with each other
#   than with any letter, and the marks that end a phrase or a sentence are each other's
#   neighbours: what follows them (a space or a newline, then often a capital) is the same;
# - the newline's nearest neighbour is the space: both end a word;
# - the vowels are more alike than a vowel and a consonant, but only a little, and less in
#   the longer `standard` run than in `quick`: once the model knows more, which letter is a
#   vowel matters less than which letters each one combines with;
# - in the `standard` run, more than half of the lower-case letters have their own capital
#   among their three nearest neighbours, learned only from the contexts both appear in
#   (fewer in the shorter `quick` run, which has seen far fewer capitals).
#
# The plot shows the two directions of largest variance only, so neighbours on the page are
# not always neighbours in the full space; the similarities above are the ones to trust.
# These are the shared statistics chapter 2 asked for: what the model learns about a context
# with an *a* partly carries over to the same context with an *A*, or with an *e*.

# %% [markdown]
# ## Results
#
# The `quick` profile trains on the first 500,000 training characters and scores the first
# 50,000 validation characters, with a smaller model (embeddings of 16, hidden layer of 256)
# trained for 1,500 steps of 128 windows; `standard` uses all 4.1 million and all 346,000
# characters, and a model with embeddings of 32 and a hidden layer of 512, trained for 12,000
# steps of 512 windows. `full` (for one GPU) trains the headline MLP with embeddings of 64 and
# a hidden layer of 2,048 for 30,000 steps of 2,048 windows, and keeps `standard`'s settings
# for the smaller experiments (optimizers, learning-rate range, overfitting, resuming), whose
# point is the comparison, not the size. Losses are in nats per character on the validation
# plays, context of five characters. The `full` column waits for a GPU run: its MLP is
# expected to come closer to the 6-gram than `standard`'s, and the cell below prints what it
# reaches.
#
# | quantity | `quick` | `standard` | `full` |
# |---|---|---|---|
# | unigram | 3.33 | 3.31 | as `standard` |
# | 6-gram, modified Kneser-Ney | 1.71 | 1.44 | as `standard` |
# | MLP, context 5 | 2.17 | 1.56 | printed by the run |
# | MLP training time | ≈ 5 s (2 cores) | ≈ 2 to 2.5 min (2 cores) | printed by the run |
# | final training loss, each at its best rate: SGD / momentum / Adam | 2.37 / 2.35 / 2.31 | 2.17 / 2.16 / 2.06 | as `standard` |
# | overfitting, validation at the end: none / dropout / weight decay / early stopping | 3.13 / 2.98 / 2.75 / 2.94 | 2.70 / 2.50 / 2.54 / 2.54 | as `standard` |
# | resumed run identical to the uninterrupted one | yes | yes | yes |
#
# The cell below prints this run's numbers, so you can compare.

# %%
print(
    f"profile {PROFILE}: unigram {unigram_score:.3f}, 6-gram {ngram_score:.3f}, MLP "
    f"{mlp_score:.3f} nats/char, MLP trained in {mlp_train_s:.0f} s; optimizers "
    f"{sgd_final:.2f} / {momentum_final:.2f} / {adam_final:.2f}; overfitting "
    + " / ".join(f"{r['final val']:.2f}" for r in rows.values())
)

# %% [markdown]
# ## Summary
#
# - The chain rule on a graph of operations gives every partial derivative in one backward
#   sweep: each operation multiplies the gradient of its output by its local derivatives and
#   passes the products to its inputs; a value used twice adds up its gradients.
# - Engines work on arrays, not numbers: a `Function` has a `forward` and a `backward` on NumPy
#   or CuPy arrays, calling it records the graph, and `Tensor.backward` visits the graph in
#   reverse topological order. Broadcasting in the forward pass means summing over the
#   broadcast axes in the backward pass.
# - Every backward pass is checked against central differences, in float64 (float32 cannot
#   resolve the difference between a right and a wrong gradient), with randomly weighted
#   outputs so that a forgotten factor of the upstream gradient is caught.
# - The MLP language model embeds each character of a fixed window, passes the concatenated
#   vectors through a tanh layer and a softmax. With five characters of context it beats the
#   unigram baseline by more than a nat per character, and comes within about an eighth of
#   a nat of the 6-gram Kneser-Ney model on four million characters.
# - Initialization sets the scale of the signals: $N(0, 1)$ saturates tanh and explodes ReLU;
#   Xavier (tanh) and He (ReLU) keep activations and gradients steady through depth.
# - Each at its best learning rate, Adam beats momentum, which beats plain SGD, on this
#   model; AdamW decouples weight decay from the adaptive step. A learning-rate range test
#   finds a good rate in a few hundred steps; warmup with cosine decay is the schedule of the
#   rest of the book.
# - On a small data set the model memorises; dropout, weight decay and early stopping each
#   keep the validation loss down.
# - A checkpoint must hold the model, the optimizer, the schedule, the data sampler, the
#   random generators and the history; with all of them, a resumed run is bit-for-bit the
#   same as one that never stopped.
# - Learned character embeddings put punctuation marks together, the newline beside the
#   space, and many letters beside their capitals, without being told what any of them are;
#   vowels are only a little more alike than a vowel and a consonant.

# %% [markdown]
# ## Exercises
#
# **1.** Write a `Function` for the element-wise $y = x^3$ and for the sigmoid-weighted linear
# unit $y = x\,\sigma(x)$ (SiLU), each with its backward pass, and check both with
# `gradcheck`. Then break the SiLU's backward on purpose by dropping the term that comes from
# differentiating the first factor $x$, and show that the check catches it.


# %% tags=["hide-cell"]
# Solution: d(x^3)/dx = 3x^2; for SiLU, the product rule gives
# d(x sigma(x))/dx = sigma(x) + x sigma(x) (1 - sigma(x)). Dropping the first term gives a
# gradient that is wrong everywhere, and gradcheck reports it.
class Cube(Function):
    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, grad):
        return grad * 3 * self.x**2


class SiLU(Function):
    def forward(self, x):
        self.x, self.s = x, 1 / (1 + np.exp(-x))
        return x * self.s

    def backward(self, grad):
        return grad * (self.s + self.x * self.s * (1 - self.s))


class BrokenSiLU(SiLU):
    def backward(self, grad):
        return grad * self.x * self.s * (1 - self.s)  # the term sigma(x) is missing


t = Tensor(np.random.default_rng(3).standard_normal((4, 3)), requires_grad=True)
assert gradcheck(lambda u: Cube()(u), t) and gradcheck(lambda u: SiLU()(u), t)
try:
    gradcheck(lambda u: BrokenSiLU()(u), t)
    caught = False
except AssertionError as err:
    caught = True
    print("caught:", err)
assert caught

# %% [markdown]
# **2.** The loss of the untrained MLP was close to $\ln V$ but not equal to it. Make it
# *exactly* $\ln V$ by changing the initialization of one layer, explain why that works, and
# say why you would not want to initialize every layer that way.

# %% tags=["hide-cell"]
# Solution: set the output layer's weight and bias to zero. Then every logit is 0 for every
# input, the softmax is uniform, and the loss of every example is ln V exactly. It is a fine
# choice for the last layer (the gradient reaching its weights is still non-zero, since the
# hidden activations are), but zeroing every layer would make all hidden units identical:
# they would get identical gradients forever, and the network could never break the symmetry.
lmcore.manual_seed(0)
fresh = MLPLanguageModel(V, CONTEXT, embed_dim=EMBED, hidden=HIDDEN)
nn.init.zeros_(fresh.output.weight)
nn.init.zeros_(fresh.output.bias)
zero_init_loss = evaluate(fresh, val_windows)
print(f"loss with a zero output layer: {zero_init_loss:.6f}, ln V = {math.log(V):.6f}")
assert math.isclose(zero_init_loss, math.log(V), rel_tol=1e-5)

# %% [markdown]
# **3.** A row of the embedding table gets a gradient only from the positions where its
# character occurs. Check on one batch that the gradient of a character's row is the sum of
# the gradients of the loss with respect to its looked-up vectors, one per occurrence, and
# that characters absent from the batch get exactly zero. What does that mean for plain SGD
# on rare characters, and how does Adam change it?

# %% tags=["hide-cell"]
# Solution: the lookup uses a row once per occurrence, and the gradients of the uses of one
# value add up (the chain rule on a graph). A character that is not in the batch gets zero,
# so SGD moves a rare character's row only in the rare batches that contain it, by a small
# gradient. Adam divides by the running root mean square of the row's own gradients, which
# is small for a rare row too, so its steps are about as long as a common row's.
lmcore.manual_seed(0)
net = MLPLanguageModel(V, CONTEXT, embed_dim=8, hidden=32)
xb, yb = next(RandomWindows(train_ids, CONTEXT, 32, seed=4))
looked_up = net.embedding(xb).detach().requires_grad_()  # (B, CONTEXT, 8), a leaf
hidden = net.hidden(looked_up.reshape(32, -1)).tanh()
F.cross_entropy(net.output(hidden), yb).backward()
_, loss = net(xb, yb)
loss.backward()
row_grads = net.embedding.weight.grad.numpy()  # (V, 8), on the CPU
xb, occurrence_grads = lmcore.backend.to_device(xb, "cpu"), looked_up.grad.numpy()
by_hand = np.zeros_like(row_grads)
np.add.at(by_hand, xb.reshape(-1), occurrence_grads.reshape(-1, 8))  # sum over occurrences
absent = np.setdiff1d(np.arange(V), xb)
print(f"{len(np.unique(xb))} characters in the batch, {len(absent)} absent")
assert np.allclose(row_grads, by_hand, atol=1e-6) and not row_grads[absent].any()

# %% [markdown]
# **4.** Show with `lmcore.optim` that momentum on a constant gradient approaches a step of
# $\eta / (1 - \mu)$, and that AdamW with a gradient of zero shrinks a weight by exactly the
# factor $(1 - \eta\lambda)$ per step, where Adam with the same `weight_decay` (an L2 penalty)
# moves it by about $\eta$ per step whatever its size.

# %% tags=["hide-cell"]
# Solution: the momentum buffer after t steps is g (1 + mu + ... + mu^(t-1)) -> g / (1 - mu).
# AdamW multiplies the weight by (1 - lr * wd) and then takes an Adam step on the zero
# gradient, which is zero. Adam's L2 penalty puts wd * w in the gradient, and Adam's
# normalization turns that into a step of about lr, the same for w = 100 and for w = 0.01.
w = nn.Parameter(np.zeros(1))
sgd = optim.SGD([w], lr=0.1, momentum=0.9)
for _ in range(200):
    before = w.data.copy()
    w.grad = np.ones(1)
    sgd.step()
print(
    f"momentum step after 200 steps: {(before - w.data).item():.4f}, lr / (1 - mu) = {0.1 / 0.1:.4f}"
)
assert math.isclose((before - w.data).item(), 1.0, rel_tol=1e-6)

for start_value in (100.0, 0.01):
    decoupled, coupled = (
        nn.Parameter(np.array([start_value])),
        nn.Parameter(np.array([start_value])),
    )
    adamw = optim.AdamW([decoupled], lr=1e-3, weight_decay=0.1)
    adam = optim.Adam([coupled], lr=1e-3, weight_decay=0.1)
    decoupled.grad, coupled.grad = np.zeros(1), np.zeros(1)
    adamw.step()
    adam.step()
    print(
        f"w = {start_value:6g}: AdamW -> {decoupled.data[0]:.8g} "
        f"(factor {decoupled.data[0] / start_value:.6f}), Adam + L2 -> {coupled.data[0]:.8g}"
    )
    assert math.isclose(decoupled.data[0], start_value * (1 - 1e-3 * 0.1))
    assert math.isclose(start_value - coupled.data[0], 1e-3, rel_tol=1e-3)
