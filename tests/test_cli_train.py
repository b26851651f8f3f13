"""`lmcore train` and `lmcore sample`: a quick run from a TOML file, exact resume after
Ctrl-C, sampling from the saved model and tokenizer, and errors that name the setting."""

import fnmatch
import shutil
import signal
import sys

import numpy as np
import pytest

from lmcore import cli
from lmcore.train import load_checkpoint
from lmcore.train.loop import Trainer
from lmcore.train.pretrain import load_trained
from lmcore.train.run_config import RunConfigError, load_run_config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

CHAR = cli.CONFIGS / "char_gpt.toml"
BPE = cli.CONFIGS / "bpe_gpt.toml"


@pytest.fixture(autouse=True)
def on_cpu_with_a_cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def train(*args):
    return cli.main(["train", *map(str, args), "--profile", "quick", "--no-progress"])


def history_of(folder):
    return load_checkpoint(folder / "checkpoint.safetensors", restore_rng=False).state["history"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The quick profile of the shipped char_gpt.toml, run straight through."""
    folder = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMCORE_DEVICE", "cpu")
        patch.setenv("LMCORE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert train(CHAR, "--out", folder) == 0
    return folder


def test_a_quick_run_writes_a_checkpoint_and_its_tokenizer(straight_run, capsys):
    assert sorted(p.name for p in straight_run.iterdir()) == [
        "checkpoint.safetensors",
        "tokenizer.json",
    ]
    history = history_of(straight_run)
    assert history["step"] == list(range(1, 21)) and history["val_step"] == [10, 20]
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["tokens"] == [8 * 32] * 20  # batch_size * block_size
    model, tokenizer, checkpoint = load_trained(straight_run)
    assert checkpoint.step == 20 and not model.training
    assert model.config.vocab_size == tokenizer.vocab_size == 76
    assert checkpoint.config["settings"]["model"]["n_layer"] == 1


def test_ctrl_c_then_resume_gives_the_straight_runs_curve_bit_for_bit(
    straight_run, tmp_path, monkeypatch, capsys
):
    original = Trainer.step

    def step(self, number):
        if number == 7:  # Ctrl-C while step 7 runs: not a checkpoint step
            signal.raise_signal(signal.SIGINT)
        original(self, number)

    monkeypatch.setattr(Trainer, "step", step)
    assert train(CHAR, "--out", tmp_path) == 130
    assert "--resume" in capsys.readouterr().err
    assert history_of(tmp_path)["step"] == list(range(1, 8))
    monkeypatch.setattr(Trainer, "step", original)
    assert train(CHAR, "--out", tmp_path, "--resume") == 0
    resumed, straight = history_of(tmp_path), history_of(straight_run)
    assert resumed["train_loss"] == straight["train_loss"]
    assert resumed["val_loss"] == straight["val_loss"]
    a, _, _ = load_trained(tmp_path)
    b, _, _ = load_trained(straight_run)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))


def test_a_finished_run_is_never_overwritten_and_resumes_only_with_its_settings(
    straight_run, tmp_path, capsys
):
    folder = tmp_path / "run"
    shutil.copytree(straight_run, folder)
    assert train(CHAR, "--out", folder) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    changed = tmp_path / "changed.toml"
    changed.write_text(CHAR.read_text().replace("steps = 20\n", "steps = 30\n"))
    assert train(changed, "--out", folder, "--resume") == 2
    assert "training.steps: 20 -> 30" in capsys.readouterr().err


def sample(folder, *options):
    return cli.main(["sample", str(folder), "--max-new-tokens", "40", *map(str, options)])


def test_sampling_continues_the_prompt_reproducibly(straight_run, capsys):
    assert sample(straight_run, "--prompt", "ROMEO:", "--seed", "3") == 0
    first = capsys.readouterr().out
    assert sample(straight_run, "--prompt", "ROMEO:", "--seed", "3") == 0
    assert capsys.readouterr().out == first
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 40 + 1


def test_sampling_forwards_temperature_top_k_and_top_p(straight_run, capsys):
    outputs = []
    for options in (
        ["--temperature", "0"],  # greedy
        ["--top-k", "1", "--seed", "1"],  # the likeliest token only: greedy too
        ["--top-p", "1e-6", "--seed", "2"],  # the smallest nucleus: one token, greedy
    ):
        assert sample(straight_run, "--prompt", "KING:", *options) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    assert sample(straight_run, "--prompt", "KING:", "--seed", "1") == 0
    assert capsys.readouterr().out != outputs[0]  # sampling proper differs from greedy


def test_a_prompt_the_tokenizer_cannot_encode_is_an_error(straight_run, capsys):
    assert sample(straight_run, "--prompt", "ROMEO: 你好") == 2
    assert "你" in capsys.readouterr().err


def test_a_bpe_run_trains_and_samples(tmp_path, capsys):
    run_file = tmp_path / "bpe.toml"
    run_file.write_text(
        BPE.read_text()
        .replace("steps = 20\n", "steps = 6\n")
        .replace("eval_every = 10", "eval_every = 3")
    )
    assert train(run_file, "--out", tmp_path / "run") == 0
    assert "BPETokenizer(vocab_size=300" in capsys.readouterr().out
    model, tokenizer, _ = load_trained(tmp_path / "run")
    assert type(tokenizer).__name__ == "BPETokenizer" and tokenizer.vocab_size == 300
    assert sample(tmp_path / "run", "--prompt", "ROMEO:", "--seed", "0") == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


@pytest.mark.parametrize(
    "text, named",
    [
        ("[training]\nstpes = 10\n", "training.stpes is not a setting; [training] takes: steps"),
        ("[training]\nsteps = '10'\n", "training.steps must be an integer, got '10'"),
        ("[training]\nsteps = 0\n", "training.steps must be a positive integer"),
        ("[model]\nn_embd = 30\nn_head = 4\n", "model.n_embd (30) must divide by model.n_head (4)"),
        ("[optimiser]\nlr = 1e-3\n", "[optimiser] is not a section"),
        (
            "[profiles.quick.training]\nbatch = 4\n",
            "profiles.quick.training.batch is not a setting",
        ),
        ("[profiles.fast.training]\nsteps = 4\n", "profiles.fast is not a profile"),
        ("[data]\ntokenizer = 'bpe'\n", "data.vocab_size must be above 256"),
        ("[data]\ntokenizer = 'word'\n", "data.tokenizer must be one of 'char', 'bpe'"),
        ("[training]\nmixed_precision = 1\n", "training.mixed_precision must be true or false"),
        ("[training\nsteps = 1\n", "is not valid TOML"),
    ],
)
def test_a_bad_run_file_names_the_setting(tmp_path, capsys, text, named):
    run_file = tmp_path / "bad.toml"
    run_file.write_text(text)
    with pytest.raises(RunConfigError) as caught:
        load_run_config(run_file, "quick")
    assert named in str(caught.value) and str(run_file) in str(caught.value)
    assert train(run_file, "--out", tmp_path / "run") == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_shipped_run_files_give_each_profile_and_are_package_data():
    full = load_run_config(CHAR, "full")
    assert {k: full["model"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")} == {
        "n_layer": 6,
        "n_head": 6,
        "n_embd": 384,
        "block_size": 256,
    }  # nanoGPT's Shakespeare shape
    assert full["model"]["dropout"] == 0.2 and full["optimizer"]["lr"] == 1e-3
    assert full["training"]["batch_size"] == 64 and full["schedule"]["warmup_steps"] > 0
    for path in (CHAR, BPE):
        sizes = [load_run_config(path, p)["model"]["n_embd"] for p in ("quick", "standard", "full")]
        assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert load_run_config(BPE, "full")["data"] == {
        "corpus": "shakespeare",
        "tokenizer": "bpe",
        "vocab_size": 512,
    }
    with open(cli.CONFIGS.parent.parent / "pyproject.toml", "rb") as file:
        patterns = tomllib.load(file)["tool"]["setuptools"]["package-data"]["*"]
    assert all(any(fnmatch.fnmatch(p.name, pat) for pat in patterns) for p in (CHAR, BPE))
