"""Figures drawn by code: a tensor's computation graph, the unrolled RNN, the LSTM and GRU
cells, attention's shapes, the Transformer block and the GPT stack.

Each ``draw_*`` function draws on a Matplotlib ``Axes`` (a new figure when none is given)
and returns it; :func:`graph_of` returns the graph that :func:`draw_graph` draws, so a test
or a reader can check the picture against the tensors it was drawn from.

Example:
    >>> from lmcore.autograd import Tensor
    >>> x = Tensor([[1.0, 2.0]], requires_grad=True)
    >>> w = Tensor([[0.5], [-1.0]], requires_grad=True)
    >>> loss = (x @ w).sum()
    >>> nodes, edges = graph_of(loss, names={"x": x, "w": w})
    >>> sorted(n.label for n in nodes if n.kind == "op")
    ['MatMul', 'Sum']
    >>> ax = draw_graph(loss, names={"x": x, "w": w})
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GraphNode",
    "draw_attention_shapes",
    "draw_gpt",
    "draw_graph",
    "draw_gru_cell",
    "draw_lstm_cell",
    "draw_transformer_block",
    "draw_unrolled_rnn",
    "graph_of",
]

COLORS = {
    "leaf": "#cfe3f7",  # a tensor made by the user: inputs and parameters
    "tensor": "#ffffff",  # a tensor an operation made
    "op": "#fde2c4",  # an operation (a Function)
    "gate": "#d9f0d3",  # a gate's nonlinearity
    "norm": "#e8dff5",  # normalization
    "state": "#f5f5f5",
}


@dataclass
class GraphNode:
    """One node of a drawn graph: a tensor or an operation, placed in a column."""

    kind: str  # "leaf", "tensor" or "op"
    label: str
    column: int


def graph_of(tensor, names: dict | None = None):
    """The computation graph behind ``tensor``: ``(nodes, edges)``, where edges are
    ``(from_index, to_index)`` pairs pointing forward (inputs to operation to output).

    Tensors are labelled with their name from ``names`` (name -> tensor) or their shape;
    operations with their Function's class name. A node's column is its distance from the
    leaves, so data flows left to right.
    """
    by_id = {id(t): name for name, t in (names or {}).items()}
    nodes: list[GraphNode] = []
    edges: list[tuple[int, int]] = []
    index: dict[int, int] = {}

    def label_of(t) -> str:
        return by_id.get(id(t), str(tuple(t.shape)))

    def visit(t) -> int:  # the node index of tensor t, its history added first
        if id(t) in index:
            return index[id(t)]
        function = t.creator
        if function is None:
            nodes.append(GraphNode("leaf", label_of(t), 0))
            index[id(t)] = len(nodes) - 1
            return index[id(t)]
        key = id(function)
        if key not in index:
            inputs = [visit(x) for x in function.inputs]
            column = 1 + max(nodes[i].column for i in inputs)
            nodes.append(GraphNode("op", type(function).__name__, column))
            index[key] = len(nodes) - 1
            edges.extend((i, index[key]) for i in inputs)
        op = index[key]
        nodes.append(GraphNode("tensor", label_of(t), nodes[op].column + 1))
        index[id(t)] = len(nodes) - 1
        edges.append((op, index[id(t)]))
        return index[id(t)]

    visit(tensor)
    for i, node in enumerate(nodes):  # a leaf sits just left of the first operation reading it
        if node.kind == "leaf":
            node.column = min(nodes[op].column for src, op in edges if src == i) - 1
    return nodes, edges


def draw_graph(tensor, names: dict | None = None, ax=None):
    """Draw the computation graph behind ``tensor`` (see :func:`graph_of`): leaves in blue
    on the left, operations in orange, the tensors they make in white, ``tensor`` on the
    right. Backpropagation walks the arrows the other way."""
    nodes, edges = graph_of(tensor, names)
    columns: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        columns.setdefault(node.column, []).append(i)
    height = max(len(c) for c in columns.values())
    ax = _axes(ax, (1.6 * (len(columns) + 1), 0.9 * height + 1.2))
    place = {}
    for column, members in columns.items():
        offset = (len(members) - 1) / 2  # each column centred on y = 0
        for row, i in enumerate(members):
            place[i] = (1.6 * column, offset - row)
    for a, b in edges:
        _arrow(ax, place[a], place[b], shrink=0.55)
    for i, node in enumerate(nodes):
        rounded = node.kind == "op"
        _box(ax, place[i], node.label, COLORS[node.kind], width=1.25, height=0.5, rounded=rounded)
    xs = [p[0] for p in place.values()]
    ys = [p[1] for p in place.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    return ax


def draw_unrolled_rnn(steps: int = 4, ax=None):
    """An RNN unrolled over ``steps`` positions: the same cell (the same weights) at every
    step, the state :math:`h_t` passed to the right, one input below and one output above."""
    ax = _axes(ax, (2.2 * steps + 1.5, 3.6))
    for t in range(1, steps + 1):
        x = 2.2 * t
        _box(ax, (x, 0), "cell\n$W_{xh}, W_{hh}$", COLORS["op"], width=1.3, height=0.8)
        _box(ax, (x, -1.5), f"$x_{t}$", COLORS["leaf"], width=0.7, height=0.45)
        _box(ax, (x, 1.5), f"logits$_{t}$", COLORS["tensor"], width=1.1, height=0.45)
        _arrow(ax, (x, -1.27), (x, -0.4))
        _arrow(ax, (x, 0.4), (x, 1.27))
        _arrow(ax, (x - 2.2 + 0.65, 0), (x - 0.65, 0), label=f"$h_{t - 1}$" if t > 1 else None)
    _box(ax, (0.55, 0), "$h_0 = 0$", COLORS["state"], width=0.9, height=0.45)
    _arrow(ax, (2.2 * steps + 0.65, 0), (2.2 * steps + 1.5, 0), label=f"$h_{steps}$")
    ax.set_xlim(-0.2, 2.2 * steps + 1.8)
    ax.set_ylim(-2.0, 2.0)
    return ax


def draw_lstm_cell(ax=None):
    """The LSTM cell: four gates computed from :math:`x_t` and :math:`h_{t-1}`; the cell
    state :math:`c` runs along the top, scaled by the forget gate and added to by the input
    gate; the output gate reads a squashed copy of it out as :math:`h_t`."""
    ax = _axes(ax, (9.0, 4.6))
    top, middle, bottom = 2.0, 0.2, -1.6
    _box(ax, (-0.6, top), "$c_{t-1}$", COLORS["state"], width=0.8, height=0.45)
    _box(ax, (-0.6, bottom), "$h_{t-1}$", COLORS["state"], width=0.8, height=0.45)
    _box(ax, (1.1, -2.5), "$x_t$", COLORS["leaf"], width=0.6, height=0.45)
    gates = [
        (1.1, "$f_t$\n$\\sigma$"),
        (2.5, "$i_t$\n$\\sigma$"),
        (3.9, "$g_t$\ntanh"),
        (5.3, "$o_t$\n$\\sigma$"),
    ]
    _arrow(ax, (-0.2, bottom), (5.3 - 0.45, bottom), head=False)
    _arrow(ax, (1.1, -2.27), (1.1, bottom), head=False)
    for x, label in gates:
        _box(ax, (x, middle - 0.6), label, COLORS["gate"], width=0.9, height=0.7)
        _arrow(ax, (x, bottom), (x, middle - 0.95))
    _box(ax, (1.1, top), "$\\odot$", COLORS["op"], width=0.5, height=0.5, rounded=True)
    _box(ax, (3.2, middle + 0.8), "$\\odot$", COLORS["op"], width=0.5, height=0.5, rounded=True)
    _box(ax, (3.2, top), "+", COLORS["op"], width=0.5, height=0.5, rounded=True)
    _box(ax, (6.3, top - 0.7), "tanh", COLORS["gate"], width=0.7, height=0.45)
    _box(ax, (6.3, middle - 0.6), "$\\odot$", COLORS["op"], width=0.5, height=0.5, rounded=True)
    _arrow(ax, (-0.2, top), (0.85, top))
    _arrow(ax, (1.1, middle - 0.25), (1.1, top - 0.25))
    _arrow(ax, (2.5, middle - 0.25), (2.95, middle + 0.8))
    _arrow(ax, (3.9, middle - 0.25), (3.45, middle + 0.8))
    _arrow(ax, (3.2, middle + 1.05), (3.2, top - 0.25))
    _arrow(ax, (1.35, top), (2.95, top))
    _arrow(ax, (3.45, top), (7.6, top), label="$c_t$")
    _arrow(ax, (6.3, top), (6.3, top - 0.48), head=True)
    _arrow(ax, (6.3, top - 0.93), (6.3, middle - 0.35))
    _arrow(ax, (5.75, middle - 0.6), (6.05, middle - 0.6))
    _arrow(ax, (6.55, middle - 0.6), (7.6, middle - 0.6), label="$h_t$")
    ax.set_xlim(-1.2, 8.0)
    ax.set_ylim(-2.9, 2.6)
    return ax


def draw_gru_cell(ax=None):
    """The GRU cell: a reset gate :math:`r_t` decides how much of :math:`h_{t-1}` the
    candidate :math:`n_t` sees, and an update gate :math:`z_t` mixes the old state and the
    candidate, :math:`h_t = (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}`."""
    ax = _axes(ax, (8.0, 4.2))
    top, middle, bottom = 1.8, 0.0, -1.6
    _box(ax, (-0.6, top), "$h_{t-1}$", COLORS["state"], width=0.8, height=0.45)
    _box(ax, (1.0, -2.5), "$x_t$", COLORS["leaf"], width=0.6, height=0.45)
    _arrow(ax, (-0.6, top - 0.23), (-0.6, bottom), head=False)
    _arrow(ax, (-0.6, bottom), (4.5, bottom), head=False)
    _arrow(ax, (1.0, -2.27), (1.0, bottom), head=False)
    for x, label in ((1.6, "$z_t$\n$\\sigma$"), (3.0, "$r_t$\n$\\sigma$")):
        _box(ax, (x, middle), label, COLORS["gate"], width=0.9, height=0.7)
        _arrow(ax, (x, bottom), (x, middle - 0.35))
    _box(ax, (4.5, middle), "$n_t$\ntanh", COLORS["gate"], width=0.9, height=0.7)
    _arrow(ax, (4.5, bottom), (4.5, middle - 0.35), label="$W x_t + r_t \\odot U h_{t-1}$")
    _arrow(ax, (3.45, middle), (4.05, middle))
    _box(ax, (5.6, top), "mix", COLORS["op"], width=0.8, height=0.5, rounded=True)
    _arrow(ax, (-0.2, top), (5.2, top), label="$z_t \\odot h_{t-1}$")
    _arrow(ax, (1.6, middle + 0.35), (5.3, top - 0.25))
    _arrow(ax, (4.95, middle), (5.6, top - 0.25), label="$(1 - z_t) \\odot n_t$")
    _arrow(ax, (6.0, top), (7.0, top), label="$h_t$")
    ax.set_xlim(-1.2, 7.5)
    ax.set_ylim(-2.9, 2.4)
    return ax


def draw_attention_shapes(T: int = 6, head_dim: int = 4, n_head: int = 2, ax=None):
    """Attention's arrays for one head, drawn to scale: Q, K and V (T, d); the scores
    :math:`S = QK^\\top / \\sqrt{d}` (T, T) with the causal mask's upper triangle struck
    out; :math:`P = \\operatorname{softmax}(S)` row by row; the output :math:`PV` (T, d)."""
    import matplotlib.patches as patches

    ax = _axes(ax, (11.0, 3.6))
    cell = 0.3
    x = 0.0

    def grid(x0, rows, cols, label, color, masked=False):
        for r in range(rows):
            for c in range(cols):
                face = "#bbbbbb" if masked and c > r else color
                ax.add_patch(
                    patches.Rectangle(
                        (x0 + c * cell, -r * cell), cell, cell, facecolor=face, edgecolor="#555"
                    )
                )
        ax.text(x0 + cols * cell / 2, cell * 1.6, label, ha="center", va="bottom", fontsize=10)
        return x0 + cols * cell

    for name in ("Q", "K", "V"):
        x = grid(x, T, head_dim, f"${name}$  ({T}, {head_dim})", COLORS["leaf"]) + 0.5
    x = grid(x + 0.3, T, T, f"$S = QK^\\top/\\sqrt{{d}}$  ({T}, {T})", COLORS["op"], True) + 0.5
    x = grid(x, T, T, f"$P$ = softmax rows  ({T}, {T})", COLORS["gate"], True) + 0.5
    x = grid(x + 0.3, T, head_dim, f"$PV$  ({T}, {head_dim})", COLORS["tensor"])
    ax.text(
        x / 2,
        -T * cell - 0.5,
        f"one head of {n_head}: the heads' outputs are joined to width {n_head * head_dim}; "
        "grey: future positions, masked to probability 0",
        ha="center",
        fontsize=9,
    )
    ax.set_xlim(-0.3, x + 0.3)
    ax.set_ylim(-T * cell - 0.9, cell * 2.8)
    return ax


def draw_transformer_block(ax=None):
    """GPT-2's pre-norm block: LayerNorm, attention, add; LayerNorm, MLP, add. The residual
    stream runs straight up the left; each branch reads a normalized copy and adds its
    result back, so the stream itself is never rescaled."""
    ax = _axes(ax, (5.2, 7.0))
    steps = [
        (0.0, "x  (B, T, C)", COLORS["leaf"], None),
        (1.2, "LayerNorm", COLORS["norm"], "ln_1"),
        (2.3, "causal multi-head\nattention", COLORS["op"], "attn"),
        (3.4, "+", COLORS["op"], None),
        (4.5, "LayerNorm", COLORS["norm"], "ln_2"),
        (5.6, "MLP: Linear C→4C,\nGELU, Linear 4C→C", COLORS["op"], "mlp"),
        (6.7, "+", COLORS["op"], None),
    ]
    for y, label, color, name in steps:
        x = 0.0 if label in ("+", "x  (B, T, C)") else 1.6
        width = 0.45 if label == "+" else (1.9 if x else 1.6)
        _box(ax, (x, y), label, color, width=width, height=0.6 if x else 0.45, rounded=label == "+")
        if name:
            ax.text(x + 1.05, y, name, fontsize=8, va="center", color="#555")
    _arrow(ax, (0, 0.23), (0, 3.17), label="residual")
    _arrow(ax, (0, 3.63), (0, 6.47), label="residual")
    _arrow(ax, (0, 0.6), (1.6, 0.9))
    _arrow(ax, (1.6, 1.45), (1.6, 2.0))
    _arrow(ax, (1.6, 2.6), (0.23, 3.4))
    _arrow(ax, (0, 3.9), (1.6, 4.2))
    _arrow(ax, (1.6, 4.75), (1.6, 5.3))
    _arrow(ax, (1.6, 5.9), (0.23, 6.7))
    _arrow(ax, (0, 6.93), (0, 7.5), label="to the next block")
    ax.set_xlim(-1.2, 3.3)
    ax.set_ylim(-0.5, 7.8)
    return ax


def draw_gpt(config, ax=None):
    """The GPT stack for a ``GPTConfig``: token and position embeddings, ``n_layer``
    blocks, a final LayerNorm and the output head, each labelled with its shape."""
    c = config
    ax = _axes(ax, (5.0, 7.0))
    positions = getattr(c, "positional", "learned")
    rows = [
        ("token ids  (B, T)", COLORS["leaf"]),
        (f"token embedding ({c.vocab_size}, {c.n_embd})\n+ positions ({positions})", COLORS["op"]),
        (f"{c.n_layer} × block: {c.n_head} heads of {c.n_embd // c.n_head}, width {c.n_embd}", COLORS["norm"]),
        ("final LayerNorm", COLORS["norm"]),
        (f"output head ({c.n_embd} → {c.vocab_size})", COLORS["op"]),
        (f"logits  (B, T, {c.vocab_size})", COLORS["tensor"]),
    ]  # fmt: skip
    for k, (label, color) in enumerate(rows):
        _box(ax, (0, 1.2 * k), label, color, width=3.9, height=0.75)
        if k:
            _arrow(ax, (0, 1.2 * k - 0.82), (0, 1.2 * k - 0.38))
    ax.text(2.1, 1.2 * 2, f"context ≤ {c.block_size}", fontsize=8, va="center", color="#555")
    ax.set_xlim(-2.2, 3.2)
    ax.set_ylim(-0.6, 1.2 * len(rows) - 0.5)
    return ax


# -- drawing primitives --------------------------------------------------------------


def _axes(ax, size):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=size)
    ax.set_aspect("auto")
    ax.axis("off")
    return ax


def _box(ax, center, text, color, width=1.0, height=0.5, rounded=False):
    import matplotlib.patches as patches

    x, y = center
    style = "round,pad=0.02,rounding_size=0.2" if rounded else "square,pad=0.02"
    ax.add_patch(
        patches.FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle=style,
            facecolor=color,
            edgecolor="#333333",
            linewidth=1.0,
            zorder=2,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=9, zorder=3)


def _arrow(ax, start, end, label=None, shrink=0.0, head=True):
    import numpy as np

    start, end = np.asarray(start, float), np.asarray(end, float)
    if shrink:  # stop short of the boxes' centres
        direction = (end - start) / max(np.linalg.norm(end - start), 1e-9)
        start, end = start + shrink * direction * 0.9, end - shrink * direction * 1.1
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops=dict(arrowstyle="-|>" if head else "-", color="#333333", lw=1.0),
        zorder=1,
    )
    if label:
        middle = (start + end) / 2
        ax.text(middle[0], middle[1] + 0.12, label, ha="center", va="bottom", fontsize=8)
