"""The figures drawn by code: the graph drawn is the graph autograd built."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lmcore.functional as F  # noqa: E402
from lmcore import diagrams  # noqa: E402
from lmcore.autograd import Tensor  # noqa: E402
from lmcore.models import GPTConfig  # noqa: E402


def small_graph():
    x = Tensor(np.ones((4, 3), np.float32))
    w = Tensor(np.ones((3, 5), np.float32), requires_grad=True)
    b = Tensor(np.zeros(5, np.float32), requires_grad=True)
    loss = F.cross_entropy(F.tanh(x @ w + b), np.array([0, 1, 2, 3]))
    return loss, {"x": x, "W": w, "b": b}


def test_graph_of_has_one_node_per_operation_and_tensor():
    loss, names = small_graph()
    nodes, edges = diagrams.graph_of(loss, names)
    ops = [n.label for n in nodes if n.kind == "op"]
    assert sorted(ops) == sorted(["MatMul", "Add", "Tanh", "CrossEntropy"])
    assert sorted(n.label for n in nodes if n.kind == "leaf") == ["W", "b", "x"]
    assert len([n for n in nodes if n.kind == "tensor"]) == len(ops)  # one output each
    assert len(edges) == 2 + 2 + 1 + 1 + len(ops)  # inputs of each op, then its output


def test_edges_point_forward_and_leaves_sit_left_of_their_reader():
    loss, names = small_graph()
    nodes, edges = diagrams.graph_of(loss, names)
    for a, b in edges:
        assert nodes[a].column < nodes[b].column
    bias = next(i for i, n in enumerate(nodes) if n.label == "b")
    reader = next(b for a, b in edges if a == bias)
    assert nodes[reader].column == nodes[bias].column + 1
    assert nodes[-1].kind == "tensor" and nodes[-1].label == "()"  # the loss, last


def test_a_shared_input_is_one_node():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    nodes, edges = diagrams.graph_of((x * x).sum(), {"x": x})
    assert [n.label for n in nodes].count("x") == 1
    assert sum(1 for a, _ in edges if nodes[a].label == "x") == 2  # x feeds Mul twice


@pytest.mark.parametrize(
    "draw",
    [
        lambda: diagrams.draw_graph(small_graph()[0]),
        diagrams.draw_unrolled_rnn,
        diagrams.draw_lstm_cell,
        diagrams.draw_gru_cell,
        diagrams.draw_attention_shapes,
        diagrams.draw_transformer_block,
        lambda: diagrams.draw_gpt(
            GPTConfig(vocab_size=65, block_size=64, n_layer=6, n_head=6, n_embd=384)
        ),
    ],
)
def test_each_figure_draws_boxes_and_text(draw):
    ax = draw()
    assert ax.patches and ax.texts
    plt.close("all")


def test_the_gpt_figure_states_the_configuration():
    ax = diagrams.draw_gpt(
        GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)
    )
    text = " ".join(t.get_text() for t in ax.texts)
    assert "6 × block: 6 heads of 64, width 384" in text and "(B, T, 65)" in text
    assert "context ≤ 256" in text
    plt.close("all")


def test_attention_figure_masks_exactly_the_future():
    ax = diagrams.draw_attention_shapes(T=5, head_dim=3)
    grey = [p for p in ax.patches if p.get_facecolor()[:3] == matplotlib.colors.to_rgb("#bbbbbb")]
    assert len(grey) == 2 * (5 * 4 // 2)  # the upper triangle of S and of P
    plt.close("all")
