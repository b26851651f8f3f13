"""Pretraining a GPT from a run file's settings, and loading what it leaves for sampling.

:func:`pretrain` builds everything the settings of :mod:`lmcore.train.run_config`
describe: the tokenizer (characters of the corpus, or byte-level BPE trained on the
training plays), the token arrays (cached on disk, :mod:`lmcore.data.tokens`), a GPT,
AdamW with no decay on biases and norms, warm-up and cosine decay, random training
blocks and a fixed set of validation blocks; then it trains with a
:class:`~lmcore.train.loop.Trainer`. The output folder holds ``tokenizer.json`` and
``checkpoint.safetensors`` (the model, the optimizer, the schedule, the batch source,
the history, the RNG state and the settings), so ``resume=True`` continues exactly,
after Ctrl-C too. :func:`load_trained` reads the folder back for sampling.

Example:
    >>> import tempfile
    >>> from lmcore.train.run_config import resolve_run_config
    >>> settings = resolve_run_config({
    ...     "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
    ...     "schedule": {"warmup_steps": 2},
    ...     "training": {"steps": 4, "batch_size": 4, "eval_every": 2, "eval_batches": 1,
    ...                  "peak_tflops": 1.0}})
    >>> out = tempfile.mkdtemp()
    >>> history = pretrain(settings, out, progress=False, cache_dir=tempfile.mkdtemp())
    >>> len(history), len(history.val_loss)
    (4, 2)
    >>> model, tokenizer, checkpoint = load_trained(out)
    >>> checkpoint.step, type(tokenizer).__name__
    (4, 'CharTokenizer')
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict
from pathlib import Path

from lmcore import backend, data, optim, rng, tokenizers
from lmcore.data.batches import RandomBlocks
from lmcore.data.tokens import shakespeare_tokens
from lmcore.models.gpt import GPT, GPTConfig
from lmcore.train.checkpoint import CheckpointError, load_checkpoint
from lmcore.train.flops import gpt_flops_per_token, measure_peak_flops
from lmcore.train.history import History
from lmcore.train.loop import Trainer

__all__ = ["CHECKPOINT", "TOKENIZER", "load_trained", "pretrain"]

CHECKPOINT = "checkpoint.safetensors"
TOKENIZER = "tokenizer.json"
FORMAT = "lmcore-pretrain/1"
SETTINGS = ("data", "model", "optimizer", "schedule", "training", "profile")


def pretrain(
    settings: dict,
    out_dir,
    *,
    resume: bool = False,
    progress: bool = True,
    cache_dir=None,
    report=None,
) -> History:
    """Train the GPT that ``settings`` (from :func:`~lmcore.train.run_config.load_run_config`)
    describe, writing ``tokenizer.json`` and ``checkpoint.safetensors`` into ``out_dir``;
    ``resume`` continues the checkpoint there. ``cache_dir`` is where token arrays are
    kept (default :func:`lmcore.data.tokens.default_cache_dir`); ``report(line)``, if
    given, receives a few lines describing the run before it starts.

    Raises FileExistsError when ``out_dir`` already holds a checkpoint and ``resume`` is
    False (nothing is overwritten), and :class:`~lmcore.train.checkpoint.CheckpointError`
    when resuming with settings other than the checkpoint's.
    """
    out = Path(out_dir)
    checkpoint = out / CHECKPOINT
    settings = {key: settings[key] for key in SETTINGS}
    if resume:
        tokenizer = _resumed_tokenizer(checkpoint, settings)
    else:
        if checkpoint.exists():
            raise FileExistsError(
                f"{out} already holds a checkpoint ({CHECKPOINT}); resume it (--resume, "
                "resume=True) or choose another output folder: nothing was overwritten."
            )
        out.mkdir(parents=True, exist_ok=True)
        tokenizer = _new_tokenizer(settings["data"])
        tokenizer.save(out / TOKENIZER)
    d, m, o, s, t = (settings[key] for key in SETTINGS[:5])
    train_ids = shakespeare_tokens("train", tokenizer, cache_dir=cache_dir)
    val_ids = shakespeare_tokens("val", tokenizer, cache_dir=cache_dir)
    rng.manual_seed(t["seed"])
    config = GPTConfig(vocab_size=tokenizer.vocab_size, **m)
    model = GPT(config, device=backend.device())
    optimizer = optim.AdamW(
        optim.weight_decay_groups(model, o["weight_decay"]),
        lr=o["lr"],
        betas=(o["beta1"], o["beta2"]),
    )
    schedule = optim.WarmupCosine(s["warmup_steps"], t["steps"], s["min_lr_factor"])
    batches = RandomBlocks(train_ids, m["block_size"], t["batch_size"], seed=t["seed"])
    val_source = RandomBlocks(val_ids, m["block_size"], t["batch_size"], seed=t["seed"] + 1)
    flops_per_token = gpt_flops_per_token(model)
    half = t["mixed_precision"] and backend.device() == "cuda"
    peak = (
        t["peak_tflops"] * 1e12
        if t["peak_tflops"] is not None
        else measure_peak_flops(dtype="float16" if half else "float32")
    )
    if report is not None:
        report(
            f"profile {settings['profile']}; {backend.describe()}; "
            f"{model.num_parameters():,} parameters; {tokenizer!r}"
        )
        report(
            f"tokens: {len(train_ids):,} training, {len(val_ids):,} validation (held-out "
            f"plays); {flops_per_token / 1e6:.3g} MFLOP per token; peak "
            f"{peak / 1e12:.3g} TFLOP/s ({'given' if t['peak_tflops'] else 'measured'})"
        )
    trainer = Trainer(
        model,
        optimizer,
        batches,
        t["steps"],
        scheduler=optim.LambdaLR(optimizer, schedule),
        clip=o["grad_clip"] or None,
        val_batches=list(itertools.islice(val_source, t["eval_batches"])),
        eval_every=t["eval_every"],
        checkpoint=checkpoint,
        checkpoint_every=t["checkpoint_every"],
        resume_from=checkpoint if resume else None,
        config={
            "format": FORMAT,
            "settings": settings,
            "model": asdict(config),
            "tokenizer": {"file": TOKENIZER, "sha256": _sha256(out / TOKENIZER)},
        },
        progress=progress,
        log_every=t["log_every"],
        accumulation_steps=t["accumulation_steps"],
        mixed_precision=t["mixed_precision"],
        flops_per_token=flops_per_token,
        peak_flops=peak,
    )
    return trainer.run()


def load_trained(path):
    """``(model, tokenizer, checkpoint)`` from a folder written by :func:`pretrain` or
    its ``checkpoint.safetensors``: the GPT in evaluation mode on the active device,
    the tokenizer saved beside it, and the :class:`~lmcore.train.checkpoint.Checkpoint`
    (step, settings, history)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    found = load_checkpoint(path, restore_rng=False)
    saved = found.config or {}
    if saved.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is an lmcore checkpoint, but not one written by lmcore train (its "
            f"config has format={saved.get('format')!r}); load it with load_checkpoint."
        )
    tokenizer_path = path.parent / saved["tokenizer"]["file"]
    if not tokenizer_path.is_file():
        raise FileNotFoundError(
            f"{path} needs its tokenizer, {tokenizer_path}, which is missing; copy it from "
            "the run's output folder next to the checkpoint."
        )
    if _sha256(tokenizer_path) != saved["tokenizer"]["sha256"]:
        raise CheckpointError(
            f"{tokenizer_path} is not the tokenizer {path} was trained with (its sha256 "
            "differs); use the tokenizer.json of the same run."
        )
    model = GPT(GPTConfig(**saved["model"]), device=backend.device())
    load_checkpoint(path, restore_rng=False, model=model)
    return model.eval(), tokenizers.load(tokenizer_path), found


def _new_tokenizer(settings: dict):
    """Characters of the whole corpus (a vocabulary, no text leaks), or byte-level BPE
    trained on the training plays."""
    if settings["tokenizer"] == "char":
        text = "".join(data.shakespeare(split) for split in ("train", "val", "test"))
        return tokenizers.CharTokenizer(text)
    return tokenizers.BPETokenizer.train(data.shakespeare("train"), settings["vocab_size"])


def _resumed_tokenizer(checkpoint: Path, settings: dict):
    """The tokenizer of the run in ``checkpoint``'s folder, after checking that the run
    had these ``settings``."""
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"no checkpoint to resume at {checkpoint}; start the run without resuming."
        )
    saved = load_checkpoint(checkpoint, restore_rng=False).config or {}
    if saved.get("format") != FORMAT:
        raise CheckpointError(f"{checkpoint} was not written by lmcore train; cannot resume it")
    before = saved["settings"]
    changed = [
        f"{section}.{key}: {before[section][key]!r} -> {value!r}"
        for section in SETTINGS[:5]
        for key, value in settings[section].items()
        if before[section].get(key) != value
    ]
    if before["profile"] != settings["profile"]:
        changed.append(f"profile: {before['profile']!r} -> {settings['profile']!r}")
    if changed:
        raise CheckpointError(
            f"{checkpoint} was trained with other settings, so resuming would not continue "
            f"the same run: {'; '.join(changed)}. Resume with the same file and profile, "
            "or start a new run in another folder."
        )
    path = checkpoint.parent / saved["tokenizer"]["file"]
    if not path.is_file() or _sha256(path) != saved["tokenizer"]["sha256"]:
        raise CheckpointError(
            f"{path} is missing or is not the tokenizer {checkpoint} was trained with"
        )
    return tokenizers.load(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
