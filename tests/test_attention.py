"""Fused attention, heads, rotary and sinusoidal positions, MultiHeadAttention, Block."""

import numpy as np
import pytest

from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.functional import (
    apply_rotary,
    causal_mask,
    merge_heads,
    rotary_tables,
    scaled_dot_product_attention,
    split_heads,
)
from lmcore.gradcheck import gradcheck
from lmcore.nn import functional_call
from lmcore.nn.attention import MultiHeadAttention, RotaryEmbedding, SinusoidalPositionalEncoding
from lmcore.nn.transformer import MLP, Block
from lmcore.rng import manual_seed


def random(*shape, seed=0, scale=1.0, requires_grad=True):
    data = np.random.default_rng(seed).normal(scale=scale, size=shape)
    return Tensor(data, requires_grad=requires_grad)


def qkv(batch=2, heads=2, length=4, dim=3, keys=None, seed=0):
    keys = length if keys is None else keys
    return (
        random(batch, heads, length, dim, seed=seed),
        random(batch, heads, keys, dim, seed=seed + 1),
        random(batch, heads, keys, dim, seed=seed + 2),
    )


def naive_attention(q, k, v, allowed=None, additive=None):
    """softmax(q k^T / sqrt(D) + mask) v, composed from lmcore's unfused operations."""
    scores = (q @ k.transpose(-1, -2)) * (1 / np.sqrt(q.shape[-1]))
    if additive is not None:
        scores = scores + additive
    if allowed is not None:
        scores = F.masked_fill(scores, ~allowed, -np.inf)
    return F.softmax(scores, dim=-1) @ v


def padding(batch_lengths, length):
    """(B, 1, 1, T) boolean: True at the first n positions of each sequence."""
    return (np.arange(length)[None, :] < np.array(batch_lengths)[:, None])[:, None, None, :]


# -- the fused operation --------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["plain", "causal", "padded", "additive", "causal+padded", "cross-causal"]
)
def test_fused_attention_matches_the_naive_composition(case):
    keys = 6 if case == "cross-causal" else 5
    q, k, v = qkv(length=5, keys=keys, dim=4)
    q2, k2, v2 = (Tensor(t.data.copy(), requires_grad=True) for t in (q, k, v))
    allowed = additive = None
    causal = "causal" in case
    if "padded" in case:
        allowed = padding([5, 3], 5)
    if case == "additive":
        additive = np.random.default_rng(3).normal(size=(1, 2, 5, 5))
    reference_mask = allowed
    if causal:
        future = causal_mask(5, keys)
        reference_mask = future if allowed is None else allowed & future
    mask = additive if case == "additive" else allowed
    fused = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)
    naive = naive_attention(q2, k2, v2, reference_mask, additive)
    np.testing.assert_allclose(fused.numpy(), naive.numpy(), atol=1e-12)
    weights = np.random.default_rng(4).normal(size=fused.shape)
    (fused * weights).sum().backward()
    (naive * weights).sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        np.testing.assert_allclose(a.grad, b.grad, atol=1e-12)


def test_gradcheck_causal():
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True), *qkv())


def test_gradcheck_padded_with_fully_masked_rows():
    # Left padding plus causal: the first query of sequence 1 sees no real key at all.
    allowed = ~padding([1, 2], 4)  # True at positions 1.. of sequence 0, 2.. of sequence 1
    assert gradcheck(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=allowed, causal=True),
        *qkv(),
    )


def test_gradcheck_additive_mask_and_custom_scale():
    bias = np.random.default_rng(7).normal(size=(4, 4))
    assert gradcheck(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=bias, scale=0.7), *qkv()
    )


def test_gradcheck_dropout_with_a_fixed_seed():
    def attend(q, k, v):
        generator = np.random.default_rng(5)  # the same dropout mask at every call
        return scaled_dot_product_attention(
            q, k, v, causal=True, dropout_p=0.3, generator=generator
        )

    assert gradcheck(attend, *qkv())


def test_gradcheck_cross_attention_with_more_keys_than_queries():
    q, k, v = qkv(length=2, keys=5)
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True), q, k, v)


def test_fully_masked_rows_give_zeros_and_zero_gradients():
    q, k, v = qkv()
    allowed = np.ones((2, 1, 4, 4), bool)
    allowed[0, :, 1, :] = False  # query 1 of sequence 0 may attend nowhere
    out = scaled_dot_product_attention(q, k, v, mask=allowed)
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_array_equal(out.numpy()[0, :, 1], 0)
    out.sum().backward()
    for t in (q, k, v):
        assert np.isfinite(t.grad.numpy()).all()
    np.testing.assert_array_equal(q.grad[0, :, 1], 0)
    all_masked = scaled_dot_product_attention(q, k, v, mask=np.zeros((1, 1, 1, 4), bool))
    np.testing.assert_array_equal(all_masked.numpy(), 0)


def test_large_logits_stay_finite_and_pick_the_best_key():
    q, k, v = qkv(dim=4)
    k.data[:] = 0
    k.data[..., 2, :] = 100.0  # scores of key 2: q . k / 2 ~ 1e4 in size
    q.data[:] = np.abs(q.data) + 50
    for dtype in ("float64", "float32"):
        qd, kd, vd = (Tensor(t.data.astype(dtype), requires_grad=True) for t in (q, k, v))
        out = scaled_dot_product_attention(qd, kd, vd)
        assert np.abs(out.numpy()).max() < 1e3
        np.testing.assert_allclose(out.numpy(), np.broadcast_to(vd.numpy()[..., 2:3, :], out.shape))
        out.sum().backward()
        assert all(np.isfinite(t.grad.numpy()).all() for t in (qd, kd, vd))


def test_dropout_is_reproducible_and_scales_the_weights():
    q, k, v = qkv(length=32, dim=8)
    manual_seed(3)
    first = scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    manual_seed(3)
    second = scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    np.testing.assert_array_equal(first, second)
    plain = scaled_dot_product_attention(q, k, v).numpy()
    assert not np.allclose(first, plain)
    # With v = 1 each output is the sum of its kept, rescaled weights: 1 on average.
    ones = Tensor(np.ones((2, 2, 32, 8)))
    kept = scaled_dot_product_attention(q, k, ones, dropout_p=0.5).numpy()
    assert abs(kept.mean() - 1) < 0.05


def test_return_weights_are_probabilities_with_the_future_hidden():
    q, k, v = qkv(length=5)
    out, weights = scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)
    w = weights.numpy()
    assert w.shape == (2, 2, 5, 5) and not weights.requires_grad
    np.testing.assert_allclose(w.sum(-1), 1)
    np.testing.assert_array_equal(w[..., np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]], 0)


def test_attention_errors_name_the_shapes():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"does not broadcast .* \(2, 2, 4, 4\)"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="head width"):
        scaled_dot_product_attention(q, random(2, 2, 4, 5), random(2, 2, 4, 5))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((4, 4), np.int64))
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


def test_matches_torch_when_installed():
    torch = pytest.importorskip("torch")
    q, k, v = qkv(length=6, dim=8)
    allowed = padding([6, 4], 6)
    ours = scaled_dot_product_attention(q, k, v, mask=allowed, causal=True).numpy()
    tq, tk, tv = (torch.from_numpy(t.numpy()) for t in (q, k, v))
    mask = torch.from_numpy(allowed & causal_mask(6, 6))
    theirs = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-12)


# -- heads and positions -------------------------------------------------------------------


def test_split_and_merge_heads_are_inverse_and_differentiable():
    x = random(2, 3, 3 * 8)
    q, k, v = split_heads(x, num_heads=2, num_chunks=3)
    assert q.shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(merge_heads(k).numpy(), x.numpy()[..., 8:16])
    assert gradcheck(lambda t: split_heads(t, 2, 3)[0] * split_heads(t, 2, 3)[2], x)
    assert gradcheck(merge_heads, random(2, 2, 3, 4))
    with pytest.raises(ValueError, match="divide by 6"):
        split_heads(random(2, 3, 10), num_heads=2, num_chunks=3)


def test_rotary_gradcheck_and_relative_positions():
    cos, sin = rotary_tables(6, 8, dtype=np.float64)
    assert gradcheck(lambda t: apply_rotary(t, cos, sin), random(2, 6, 8))
    # q at position m and k at position n: q.k after rotation depends only on m - n.
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=8), rng.normal(size=8)
    rotated_q = apply_rotary(Tensor(np.tile(q, (6, 1))), cos, sin).numpy()
    rotated_k = apply_rotary(Tensor(np.tile(k, (6, 1))), cos, sin).numpy()
    scores = rotated_q @ rotated_k.T  # (m, n)
    np.testing.assert_allclose(scores[3, 1], scores[5, 3])
    np.testing.assert_allclose(scores[2, 2], q @ k)
    np.testing.assert_allclose(np.linalg.norm(rotated_q, axis=1), np.linalg.norm(q))


def test_rotary_embedding_offsets_continue_the_positions():
    rope = RotaryEmbedding(head_dim=4)
    x = random(1, 1, 5, 4)
    whole = rope(x).numpy()
    np.testing.assert_allclose(rope(x[:, :, 3:], offset=3).numpy(), whole[:, :, 3:])
    with pytest.raises(ValueError, match="even head width"):
        RotaryEmbedding(3)


def test_sinusoidal_encoding_values_and_range():
    pe = SinusoidalPositionalEncoding(embed_dim=8, max_len=10, dtype="float64")
    table = pe(np.arange(10)).numpy()
    np.testing.assert_allclose(table[3, 0], np.sin(3.0))
    np.testing.assert_allclose(table[3, 3], np.cos(3 / 10000 ** (2 / 8)))
    assert pe.state_dict() == {}
    with pytest.raises(IndexError, match="max_len"):
        pe(np.arange(11))


# -- MultiHeadAttention and Block ----------------------------------------------------------


def make_attention(**kwargs):
    manual_seed(0)
    return MultiHeadAttention(16, 4, **kwargs).to("float64")


def test_multi_head_attention_shapes_names_and_weights():
    attn = make_attention()
    assert [n for n, _ in attn.named_parameters()] == [
        "c_attn.weight",
        "c_attn.bias",
        "c_proj.weight",
        "c_proj.bias",
    ]
    assert attn.c_attn.weight.shape == (48, 16)
    attn.keep_weights = True
    assert attn(random(2, 5, 16)).shape == (2, 5, 16)
    weights = attn.last_weights.numpy()
    assert weights.shape == (2, 4, 5, 5)
    np.testing.assert_allclose(np.triu(weights, 1), 0)
    assert MultiHeadAttention(16, 4, bias=False).c_attn.bias is None


@pytest.mark.parametrize("rotary", [False, True])
def test_multi_head_attention_gradcheck(rotary):
    attn = make_attention(rotary=rotary)
    x = random(2, 3, 16, scale=0.5)
    assert gradcheck(attn, x)
    weight = Tensor(attn.c_attn.weight.data.copy(), requires_grad=True)
    assert gradcheck(lambda w: functional_call(attn, {"c_attn.weight": w}, (x,)), weight)


def test_padding_mask_hides_padded_tokens():
    attn = make_attention(causal=False)
    x = random(2, 6, 16, requires_grad=False)
    real = np.array([[True] * 6, [True] * 4 + [False] * 2])
    changed = x.numpy().copy()
    changed[1, 4:] = 99.0  # rewrite the padding
    before = attn(x, padding_mask=real).numpy()
    after = attn(Tensor(changed), padding_mask=real).numpy()
    np.testing.assert_allclose(after[1, :4], before[1, :4])
    np.testing.assert_allclose(after[0], before[0])


def test_multi_head_attention_errors_name_the_layer_and_shapes():
    attn = make_attention()
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(embed_dim=16\).*\(2, 5, 8\)"):
        attn(random(2, 5, 8))
    with pytest.raises(ValueError, match=r"padding_mask .*\(2, 5\)"):
        attn(random(2, 5, 16), padding_mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="divide by num_heads"):
        MultiHeadAttention(10, 4)


def test_attention_dropout_acts_in_training_only():
    attn = make_attention(dropout=0.5)
    x = random(2, 8, 16, requires_grad=False)
    manual_seed(1)
    train_a = attn(x).numpy()
    manual_seed(1)
    np.testing.assert_array_equal(attn(x).numpy(), train_a)
    attn.eval()
    evaluated = attn(x).numpy()
    assert not np.allclose(train_a, evaluated)
    np.testing.assert_array_equal(attn(x).numpy(), evaluated)


def test_mlp_and_block():
    manual_seed(0)
    mlp = MLP(8)
    assert mlp.c_fc.weight.shape == (32, 8) and mlp.c_proj.weight.shape == (8, 32)
    block = Block(8, 2).to("float64")
    assert [n for n, _ in block.named_children()] == ["ln_1", "attn", "ln_2", "mlp"]
    x = random(2, 3, 8)
    assert block(x).shape == (2, 3, 8)
    assert gradcheck(block, x)
    # Pre-norm residual: with zeroed output projections the block is the identity.
    block.attn.c_proj.weight.data[:] = 0
    block.attn.c_proj.bias.data[:] = 0
    block.mlp.c_proj.weight.data[:] = 0
    block.mlp.c_proj.bias.data[:] = 0
    np.testing.assert_array_equal(block(x).numpy(), x.numpy())


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_block_arrangements_compute_what_they_say(norm_first, residual):
    manual_seed(0)
    block = Block(8, 2, norm_first=norm_first, residual=residual).to("float64")
    x = random(2, 5, 8)
    # The same arrangement written out from the block's own layers.
    h = x
    for norm, layer in ((block.ln_1, block.attn), (block.ln_2, block.mlp)):
        if norm_first:
            h = h + layer(norm(h)) if residual else layer(norm(h))
        else:
            h = norm(h + layer(h)) if residual else norm(layer(h))
    np.testing.assert_allclose(block(x).numpy(), h.numpy(), rtol=1e-12, atol=1e-12)
    assert gradcheck(block, x)
    arrangement = repr(block)
    assert ("norm_first=False" in arrangement) is not norm_first
    assert ("residual=False" in arrangement) is not residual


def test_post_norm_normalizes_the_stream_and_pre_norm_leaves_it_alone():
    manual_seed(0)
    x = random(2, 5, 8, scale=10.0, requires_grad=False)
    post = Block(8, 2, norm_first=False).to("float64")(x).numpy()
    np.testing.assert_allclose(post.mean(-1), 0, atol=1e-6)  # LayerNorm's output, gain 1
    np.testing.assert_allclose(post.std(-1), 1, atol=1e-3)
    pre = Block(8, 2).to("float64")(x).numpy()
    assert pre.std(-1).mean() > 5  # the stream keeps the input's scale


def test_values_may_be_wider_or_narrower_than_keys():
    g = np.random.default_rng(3)
    q, k = g.normal(size=(2, 3, 4, 5)), g.normal(size=(2, 3, 6, 5))
    v = g.normal(size=(2, 3, 6, 7))  # Dv = 7, D = 5
    out = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=True)
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(5)
    scores = np.where(np.tri(4, 6, k=2, dtype=bool), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), weights @ v, rtol=1e-10)
    tensors = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    assert gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True), *tensors)


def test_pytorchs_argument_names():
    g = np.random.default_rng(4)
    q, k, v = (Tensor(g.normal(size=(1, 2, 3, 4))) for _ in range(3))
    padding = np.array([True, True, False])[None, None, None, :]
    np.testing.assert_array_equal(
        scaled_dot_product_attention(q, k, v, attn_mask=padding).numpy(),
        scaled_dot_product_attention(q, k, v, mask=padding).numpy(),
    )
    np.testing.assert_array_equal(
        scaled_dot_product_attention(q, k, v, is_causal=True).numpy(),
        scaled_dot_product_attention(q, k, v, causal=True).numpy(),
    )
    with pytest.raises(ValueError, match="not both"):
        scaled_dot_product_attention(q, k, v, mask=padding, attn_mask=padding)
    # With fewer queries than keys, PyTorch's is_causal lets query i see keys j <= i.
    short_q = Tensor(g.normal(size=(1, 2, 2, 4)))
    _, weights = scaled_dot_product_attention(short_q, k, v, is_causal=True, return_weights=True)
    assert (weights.numpy()[..., 0, 1:] == 0).all() and (weights.numpy()[..., 1, 2:] == 0).all()
    _, weights = scaled_dot_product_attention(short_q, k, v, causal=True, return_weights=True)
    assert (weights.numpy()[..., 0, 2:] == 0).all() and (weights.numpy()[..., 1, :] > 0).all()
