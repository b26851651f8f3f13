"""Decoding: the logits filters, sampling, stopping, streaming and beam search of
lmcore.generate, checked against Hugging Face transformers (live when installed, else
through the snapshot that tests/data/make_hf_decoding_snapshot.py writes), against
exhaustive search, and on models whose next token is known."""

import json

import numpy as np
import pytest

from lmcore import nn
from lmcore.generate import (
    StopCondition,
    apply_repetition_penalty,
    beam_search,
    generate,
    sample_next,
    stream,
    top_k_filter,
    top_p_filter,
)
from lmcore.models import GPT, GPTConfig, RNNLanguageModel
from lmcore.rng import manual_seed
from lmcore.tokenizers import CharTokenizer

from .conftest import ROOT

SNAPSHOT = ROOT / "tests" / "data" / "hf_decoding"


class Cycle(nn.Module):
    """A model whose next token is the last one plus ``step`` (mod V): logit 10 for it,
    ``others`` for the rest. It counts its calls and keeps no state."""

    def __init__(self, vocab_size: int, step: int = 1, others: float = 0.0):
        super().__init__()
        self.vocab_size, self.step, self.others, self.calls = vocab_size, step, others, 0

    def _checked_ids(self, idx):
        return np.asarray(idx)

    def next_token_logits(self, idx, state=None):
        self.calls += 1
        logits = np.full((idx.shape[0], self.vocab_size), self.others)
        logits[np.arange(idx.shape[0]), (idx[:, -1] + self.step) % self.vocab_size] = 10.0
        return logits, None


def tiny_gpt(**overrides):
    manual_seed(0)
    settings = dict(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(GPTConfig(**{**settings, **overrides}))
    rng = np.random.default_rng(1)
    for parameter in model.parameters():  # larger weights: peaked, varied predictions
        parameter.data[...] = rng.normal(0, 0.4, parameter.shape)
    return model


def sequence_log_prob(model, ids, prompt_length: int) -> float:
    """Sum of log p(token | everything before it) over the tokens after the prompt."""
    logits = model(ids[None]).numpy()[0].astype(np.float64)  # (T, V)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    positions = np.arange(prompt_length, len(ids))
    return float(log_probs[positions - 1, ids[positions]].sum())


# -- filters against transformers' logits processors ----------------------------------------


def filter_cases(logits, input_ids):
    """(name, lmcore's result) for every filter setting the snapshot holds."""
    cases = [(f"top_k_{k}", top_k_filter(logits, k)) for k in (1, 3, 10)]
    for p in (0.1, 0.5, 0.9, 0.99):
        cases.append((f"top_p_{p}", top_p_filter(logits, p)))
        cases.append((f"top_p_{p}_keep3", top_p_filter(logits, p, min_tokens_to_keep=3)))
    for x in (0.7, 1.3, 2.0):
        cases.append((f"penalty_{x}", apply_repetition_penalty(logits, input_ids, x)))
    return cases


def test_filters_match_the_transformers_snapshot():
    snapshot = np.load(SNAPSHOT / "filters.npz")
    logits, input_ids = snapshot["logits"], snapshot["input_ids"]
    for name, ours in filter_cases(logits, input_ids):
        assert ours.dtype == np.float32, name
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(snapshot[name]), err_msg=name)
        np.testing.assert_allclose(ours, snapshot[name], rtol=1e-6, err_msg=name)
    # the snapshot is not trivial: each filter drops some tokens and keeps others
    for name in ("top_k_3", "top_p_0.5", "top_p_0.9_keep3"):
        kept = np.isfinite(snapshot[name]).sum(-1)
        assert (kept > 0).all() and (kept < logits.shape[-1]).all(), name


def test_filters_match_transformers_live():
    torch = pytest.importorskip("torch")
    processors = pytest.importorskip("transformers.generation.logits_process")
    rng = np.random.default_rng(7)
    for _ in range(5):
        logits = (rng.normal(size=(6, 50)) * rng.uniform(0.5, 4)).astype(np.float32)
        input_ids = rng.integers(0, 50, size=(6, 9))
        scores, ids = torch.from_numpy(logits), torch.from_numpy(input_ids)
        k, p, x = (
            int(rng.integers(1, 50)),
            float(rng.uniform(0.05, 1.0)),
            float(rng.uniform(0.3, 3)),
        )
        pairs = [
            (top_k_filter(logits, k), processors.TopKLogitsWarper(k)(ids, scores.clone())),
            (top_p_filter(logits, p), processors.TopPLogitsWarper(p)(ids, scores.clone())),
            (
                top_p_filter(logits, p, min_tokens_to_keep=4),
                processors.TopPLogitsWarper(p, min_tokens_to_keep=4)(ids, scores.clone()),
            ),
            (
                apply_repetition_penalty(logits, input_ids, x),
                processors.RepetitionPenaltyLogitsProcessor(x)(ids, scores.clone()),
            ),
        ]
        for ours, theirs in pairs:
            theirs = theirs.numpy()
            np.testing.assert_array_equal(np.isinf(ours), np.isinf(theirs))
            np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    probs = np.array([[0.05, 0.4, 0.1, 0.25, 0.2]])
    logits = np.log(probs)
    kept = lambda p, keep=1: np.flatnonzero(np.isfinite(top_p_filter(logits, p, keep)[0])).tolist()
    assert kept(0.3) == [1]
    assert kept(0.6) == [1, 3]  # 0.4 + 0.25 >= 0.6
    assert kept(0.64) == [1, 3]
    assert kept(0.66) == [1, 3, 4]
    assert kept(0.3, keep=3) == [1, 3, 4]
    assert kept(1.0) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(
        top_p_filter(logits, 0.9)[np.isfinite(top_p_filter(logits, 0.9))], logits[0, [1, 2, 3, 4]]
    )


def test_repetition_penalty_follows_ctrl():
    logits = np.array([[2.0, -1.0, 0.5, -3.0], [1.0, 1.0, 1.0, 1.0]])
    ids = np.array([[0, 1, 1], [3, 3, 3]])
    np.testing.assert_allclose(
        apply_repetition_penalty(logits, ids, 2.0),
        [[1.0, -2.0, 0.5, -3.0], [1.0, 1.0, 1.0, 0.5]],
    )
    # below 1 it favours repeats: positive logits grow, negative ones shrink toward 0
    np.testing.assert_allclose(apply_repetition_penalty(logits, ids, 0.5)[0], [4.0, -0.5, 0.5, -3])


# -- sampling ------------------------------------------------------------------------------


def test_sampling_follows_the_filtered_distribution():
    probs = np.array([0.35, 0.25, 0.2, 0.1, 0.06, 0.04])
    logits = np.tile(np.log(probs), (40000, 1))
    draws = sample_next(logits, top_p=0.75, generator=np.random.default_rng(0))[:, 0]
    expected = np.array([0.35, 0.25, 0.2, 0, 0, 0]) / 0.8  # 0.35+0.25 < 0.75 <= +0.2
    np.testing.assert_allclose(np.bincount(draws, minlength=6) / draws.size, expected, atol=0.01)
    draws = sample_next(logits, temperature=2.0, top_k=4, generator=np.random.default_rng(1))[:, 0]
    tempered = np.sqrt(probs[:4]) / np.sqrt(probs[:4]).sum()
    np.testing.assert_allclose(
        np.bincount(draws, minlength=6) / draws.size, np.r_[tempered, 0, 0], atol=0.01
    )


def test_sampling_is_reproducible_from_the_seed():
    model = tiny_gpt()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    settings = dict(top_p=0.9, top_k=8, repetition_penalty=1.3, temperature=0.8)
    first = generate(model, prompt, 12, seed=3, **settings)
    np.testing.assert_array_equal(generate(model, prompt, 12, seed=3, **settings), first)
    others = [generate(model, prompt, 12, seed=s, **settings) for s in (4, 5)]
    assert any(not np.array_equal(first, other) for other in others)


def test_greedy_with_a_repetition_penalty_moves_on_to_unseen_tokens():
    model = Cycle(6, step=0, others=1.0)  # proposes the last token again: 10 against 1
    assert generate(model, np.array([[2]]), 3, temperature=0)[0].tolist() == [2, 2, 2, 2]
    out = generate(model, np.array([[2]]), 6, temperature=0, repetition_penalty=20.0)
    # 10 / 20 and 1 / 20 for seen tokens, 1 for unseen ones: each step takes the first
    # unseen token, until none is left and the proposed one (0.5) wins again
    assert out[0].tolist() == [2, 0, 1, 3, 4, 5, 5]


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=-1.0), "repetition_penalty"),
        (dict(top_k=0), "top_k"),
        (dict(temperature=-0.5), "temperature"),
        (dict(num_beams=0), "num_beams"),
        (dict(num_beams=2, early_stopping="sometimes"), "early_stopping"),
        (dict(num_beams=2, top_k=5), "beam search does not sample"),
        (dict(stop_strings="\n"), "tokenizer"),
        (dict(stop_strings=[""], tokenizer=CharTokenizer("ab")), "non-empty"),
        (dict(eos_token_id=-1), "eos_token_id"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
    ],
)
def test_bad_settings_are_named(settings, message):
    settings = {"max_new_tokens": 3, **settings}
    with pytest.raises(ValueError, match=message):
        generate(Cycle(5), np.array([[1]]), **settings)


def test_rows_that_can_stop_apart_need_a_pad_id():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match="pad_token_id"):
        generate(Cycle(3), np.array([[0], [1]]), 4, stop_strings="c", tokenizer=tok)


def test_top_p_one_and_huge_top_k_change_nothing():
    model = tiny_gpt()
    prompt = np.array([[3, 1, 4]])
    plain = generate(model, prompt, 10, seed=2)
    np.testing.assert_array_equal(generate(model, prompt, 10, seed=2, top_p=1.0, top_k=99), plain)


# -- stopping and streaming ----------------------------------------------------------------


def test_rows_stop_at_eos_and_are_padded():
    model = Cycle(10)
    out = generate(
        model, np.array([[1], [5]]), 8, temperature=0, eos_token_id=[4, 9], pad_token_id=0
    )
    assert out.tolist() == [[1, 2, 3, 4, 0], [5, 6, 7, 8, 9]]  # ends when both have stopped
    out = generate(model, np.array([[1], [6]]), 8, temperature=0, eos_token_id=4)
    assert out.tolist() == [[1, 2, 3, 4, 4, 4, 4, 4, 4], [6, 7, 8, 9, 0, 1, 2, 3, 4]]  # pad = eos
    assert model.calls == 4 + 8


def test_stop_strings_end_rows_at_the_text_that_completes_them():
    tok = CharTokenizer("abcdefgh")
    model = Cycle(tok.vocab_size)
    prompt = np.array([tok.encode("a")])
    out = generate(model, prompt, 20, temperature=0, stop_strings=["de", "zz"], tokenizer=tok)
    assert tok.decode(out[0].tolist()) == "abcde"
    # only the new text counts: "ab" in the prompt does not stop, the next "ab" does
    out = generate(
        model, np.array([tok.encode("ab")]), 20, temperature=0, stop_strings="ab", tokenizer=tok
    )
    assert tok.decode(out[0].tolist()) == "abcdefghab"
    rows = np.array([tok.encode("a"), tok.encode("e")])
    out = generate(
        model,
        rows,
        20,
        temperature=0,
        stop_strings="g",
        tokenizer=tok,
        pad_token_id=tok.encode("a")[0],
    )
    assert [tok.decode(r) for r in out.tolist()] == ["abcdefg", "efgaaaa"]


def test_stop_condition_checks_each_row():
    stop = StopCondition(eos_token_id=7)
    assert not StopCondition() and stop
    assert stop(np.array([[1, 7], [7, 1]]), prompt_length=1).tolist() == [True, False]


def test_stream_yields_each_token_as_it_is_chosen():
    model = tiny_gpt()
    prompt = np.array([[1, 2], [3, 4]])
    steps = stream(model, prompt, 6, seed=5, top_k=5)
    first = next(steps)
    assert first.shape == (2,) and first.dtype == prompt.dtype
    rest = list(steps)
    assert len(rest) == 5
    expected = generate(model, prompt, 6, seed=5, top_k=5)[:, 2:]
    np.testing.assert_array_equal(np.stack([first, *rest], axis=1), expected)
    counting = Cycle(9)
    steps = stream(counting, np.array([[0]]), 5, temperature=0)
    assert counting.calls == 0  # nothing runs before the first token is asked for
    assert [int(next(steps)[0]) for _ in range(2)] == [1, 2] and counting.calls == 2


def test_stream_checks_its_arguments_at_the_call():
    with pytest.raises(ValueError, match="top_p"):
        stream(Cycle(5), np.array([[1]]), 3, top_p=2.0)  # no iteration needed


def test_generation_leaves_no_grad_mode_behind_between_stream_steps():
    import lmcore

    model = tiny_gpt()
    steps = stream(model, np.array([[1, 2]]), 3, seed=0)
    next(steps)
    assert lmcore.is_grad_enabled() and model.training  # the caller's modes between steps


# -- beam search ---------------------------------------------------------------------------


def test_one_beam_is_greedy():
    model = tiny_gpt()
    for prompt in (np.array([[1]]), np.array([[5, 2, 9], [0, 0, 1]]), np.arange(14)[None] % 13):
        greedy = generate(model, prompt, 9, temperature=0)
        np.testing.assert_array_equal(beam_search(model, prompt, 9, num_beams=1), greedy)


def test_enough_beams_find_the_most_likely_continuation():
    model = tiny_gpt(vocab_size=5)
    prompt = np.array([[1, 3]])
    candidates = np.array(np.meshgrid(*[np.arange(5)] * 3, indexing="ij")).reshape(3, -1).T
    scores = [sequence_log_prob(model, np.r_[prompt[0], c], 2) for c in candidates]
    best = candidates[int(np.argmax(scores))]
    found = beam_search(model, prompt, 3, num_beams=25, length_penalty=0.0)
    np.testing.assert_array_equal(found[0, 2:], best)
    greedy = generate(model, prompt, 3, temperature=0)[0]
    assert max(scores) >= sequence_log_prob(model, greedy, 2)


def test_beam_search_treats_each_row_on_its_own():
    model = tiny_gpt()
    prompts = np.array([[1, 2, 3], [7, 7, 0], [12, 4, 4]])
    settings = dict(num_beams=3, eos_token_id=[2, 5], pad_token_id=0, length_penalty=0.5)
    together = beam_search(model, prompts, 8, **settings)
    for row, prompt in enumerate(prompts):
        alone = beam_search(model, prompt[None], 8, **settings)[0]
        np.testing.assert_array_equal(together[row, : len(alone)], alone)
        assert (together[row, len(alone) :] == 0).all()


def test_beam_search_works_for_a_recurrent_model():
    manual_seed(0)
    model = RNNLanguageModel(vocab_size=9, embed_dim=8, hidden_size=16, cell="gru")
    prompt = np.array([[1, 2], [3, 4]])
    with_state = beam_search(model, prompt, 6, num_beams=3)  # its state cannot be reordered
    np.testing.assert_array_equal(with_state, beam_search(model, prompt, 6, 3, use_cache=False))
    np.testing.assert_array_equal(
        beam_search(model, prompt, 6, num_beams=1), generate(model, prompt, 6, temperature=0)
    )


# -- generation against transformers on a tiny GPT-2 -----------------------------------------


def run_case(model, case, use_cache=True):
    """lmcore's ids for one case of the snapshot (greedy or beam search)."""
    return generate(
        model,
        np.array(case["prompts"]),
        case["max_new_tokens"],
        temperature=0,
        num_beams=case["num_beams"],
        length_penalty=case["length_penalty"],
        early_stopping=case["early_stopping"],
        repetition_penalty=case["repetition_penalty"],
        eos_token_id=case["eos_token_id"],
        pad_token_id=case["pad_token_id"],
        use_cache=use_cache,
    )


def test_greedy_and_beam_search_match_the_transformers_snapshot():
    model = GPT.from_pretrained(SNAPSHOT / "tiny_gpt2")
    cases = json.loads((SNAPSHOT / "cases.json").read_text())["cases"]
    assert {c["num_beams"] for c in cases} == {1, 2, 3, 4, 5}
    assert any(len(c["expected"][0]) < 13 for c in cases)  # some stop early
    for case in cases:
        for use_cache in (True, False):
            assert run_case(model, case, use_cache).tolist() == case["expected"], case


def test_beam_search_matches_transformers_live():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(SNAPSHOT / "tiny_gpt2").eval()
    model = GPT.from_pretrained(SNAPSHOT / "tiny_gpt2")
    rng = np.random.default_rng(11)
    for trial in range(12):
        prompts = rng.integers(0, 29, size=(int(rng.integers(1, 4)), int(rng.integers(1, 5))))
        case = {
            "prompts": prompts.tolist(),
            "max_new_tokens": int(rng.integers(1, 16 - prompts.shape[1])),
            "num_beams": int(rng.integers(1, 6)),
            "length_penalty": float(rng.choice([-1.0, 0.0, 1.0, 2.0])),
            "early_stopping": [False, True, "never"][int(rng.integers(0, 3))],
            "repetition_penalty": float(rng.choice([1.0, 1.4])),
            "eos_token_id": [int(t) for t in rng.choice(29, size=trial % 3, replace=False)],
            "pad_token_id": 1,
        }
        ids = torch.from_numpy(prompts)
        with torch.no_grad():
            expected = hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                **{k: v for k, v in case.items() if k != "prompts"},
            )
        assert run_case(model, case).tolist() == expected.tolist(), case
