"""The ``lmcore`` command line.

Example:
    $ lmcore info
    $ lmcore train char_gpt.toml --profile quick --out runs/char
    $ lmcore train char_gpt.toml --profile quick --out runs/char --resume
    $ lmcore sample runs/char --prompt "ROMEO:" --max-new-tokens 200 --top-k 40 --seed 0
    $ lmcore chat --temperature 0.7 --top-p 0.9 --seed 0
    $ echo "What is the capital of France?" | lmcore chat --temperature 0
    $ lmcore bench tokenizer
    $ lmcore bench all --quick
    $ lmcore bench gpu --write results.json

``lmcore train`` takes a run file (the settings of :mod:`lmcore.train.run_config`); the
files shipped in ``lmcore/configs/`` are found by name (``char_gpt.toml``,
``bpe_gpt.toml``). Ctrl-C finishes the step, saves a checkpoint and stops; ``--resume``
continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from lmcore import backend, config
from lmcore.bench import BENCHMARKS
from lmcore.bench.common import machine

CONFIGS = Path(__file__).parent / "configs"


def _info(args) -> int:
    import lmcore

    print(f"lmcore {lmcore.__version__}; profile: {config.profile()}; {backend.describe()}")
    return 0


def _bench(args) -> int:
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    print(f"# {machine()}; {backend.describe()}\n")
    for name in names:
        options = {"write": args.write} if name == "gpu" and args.write else {}
        importlib.import_module(BENCHMARKS[name]).run(quick=args.quick, **options)
    return 0


def _run_file(name: str) -> Path:
    """A run file's path: as given, or one shipped in lmcore/configs/."""
    path = Path(name)
    if not path.exists() and (CONFIGS / path.name).is_file() and path.parent == Path("."):
        return CONFIGS / path.name
    return path


def _train(args) -> int:
    from lmcore.train import TrainingInterrupted
    from lmcore.train.pretrain import pretrain
    from lmcore.train.run_config import load_run_config

    path = _run_file(args.config)
    settings = load_run_config(path, args.profile)
    out = Path(args.out or Path("runs") / f"{path.stem}-{settings['profile']}")
    try:
        history = pretrain(
            settings, out, resume=args.resume, progress=not args.no_progress, report=print
        )
    except TrainingInterrupted as stop:
        print(
            f"Interrupted after step {stop.step}. To continue exactly where it stopped:\n"
            f"  lmcore train {args.config} --profile {settings['profile']} --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    print(f"{'step':>7} {'train':>8} {'val':>8} {'tokens/s':>10}")
    for row in history.rows():
        print(
            f"{row['step']:>7} {row['train_loss']:>8.4f} {row['val_loss']:>8.4f} "
            f"{row['tokens_per_second']:>10,.0f}"
        )
    print(f"checkpoint and tokenizer in {out}; sample with: lmcore sample {out} --prompt ...")
    return 0


def _sample(args) -> int:
    from lmcore import manual_seed
    from lmcore.generate import stream
    from lmcore.train.pretrain import load_trained

    model, tokenizer, _ = load_trained(args.checkpoint)
    if args.seed is not None:
        manual_seed(args.seed)  # one generator for the whole text, token after token
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise ValueError("the prompt encodes to no tokens; give some text, e.g. --prompt $'\\n'")
    xp = backend.xp()
    prompt = xp.asarray([ids], dtype=xp.int64)  # (1, T)
    steps = stream(
        model,
        prompt,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
    )
    sys.stdout.write(args.prompt)
    _print_stream(steps, tokenizer)
    return 0


def _print_stream(steps, tokenizer, stop_id: int | None = None) -> str:
    """Write the text of a stream of tokens (each an array (1,)) as it comes, holding back a
    character whose bytes are not all out yet; stop before ``stop_id``. Returns the text."""
    new: list[int] = []
    shown = ""
    for token in steps:
        if int(token[0]) == stop_id:
            break
        new.append(int(token[0]))
        text = tokenizer.decode(new)
        if not text.endswith("\ufffd"):
            sys.stdout.write(text[len(shown) :])
            sys.stdout.flush()
            shown = text
    text = tokenizer.decode(new)
    sys.stdout.write(text[len(shown) :] + "\n")
    sys.stdout.flush()
    return text


def _chat(args) -> int:
    """Chat with SmolLM2-135M-Instruct (or another Llama GGUF file): one user turn a line
    of stdin, the answer streamed as it is generated; the conversation is kept and its
    oldest turns dropped when it would not fit the context."""
    from lmcore import manual_seed
    from lmcore.generate import stream
    from lmcore.gguf import GGUFReader
    from lmcore.models.llama import Llama, LlamaConfig, smollm2_path
    from lmcore.tokenizers.gguf_bpe import GGUFBPETokenizer, apply_chat_template

    path = Path(args.model) if args.model else smollm2_path()
    reader = GGUFReader(path)
    tokenizer = GGUFBPETokenizer.from_gguf_metadata(reader.metadata)
    block_size = LlamaConfig.from_gguf_metadata(reader.metadata).block_size
    reader.close()
    model = None  # loaded at the first message that fits
    if args.seed is not None:
        manual_seed(args.seed)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    interactive = sys.stdin.isatty()
    limit = min(args.context or block_size, block_size)
    while True:
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        history.append({"role": "user", "content": line.rstrip("\n")})
        ids = tokenizer.encode(apply_chat_template(system + history), allowed_special="all")
        while len(ids) + args.max_new_tokens > limit and len(history) > 1:
            history = history[2:] if len(history) > 2 else history[1:]  # the oldest turn
            ids = tokenizer.encode(apply_chat_template(system + history), allowed_special="all")
        if len(ids) + args.max_new_tokens > limit:
            raise ValueError(
                f"the message takes {len(ids)} tokens; with --max-new-tokens "
                f"{args.max_new_tokens} that exceeds the context of {limit}"
            )
        if model is None:
            model = Llama.from_gguf(path)
            if args.int8:
                from lmcore.nn.quantized import quantize_model

                quantize_model(model, bits=8)
        xp = backend.xp()
        steps = stream(
            model,
            xp.asarray([ids], dtype=xp.int64),
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            eos_token_id=tokenizer.eos_token_id,
        )
        answer = _print_stream(steps, tokenizer, stop_id=tokenizer.eos_token_id)
        history.append({"role": "assistant", "content": answer})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmcore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the version, profile and device").set_defaults(fn=_info)
    bench = sub.add_parser("bench", help="run a benchmark side by side with its reference")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"])
    bench.add_argument("--quick", action="store_true", help="a small run, for a smoke test")
    bench.add_argument("--write", metavar="JSON", help="gpu: also write the results to this file")
    bench.set_defaults(fn=_bench)
    train = sub.add_parser("train", help="pretrain a GPT from a TOML run file")
    train.add_argument(
        "config", help="a .toml run file, or a shipped one: char_gpt.toml, bpe_gpt.toml"
    )
    train.add_argument(
        "--profile", choices=config.PROFILES, help="default: $LMCORE_PROFILE or by device"
    )
    train.add_argument("--out", metavar="DIR", help="output folder (default runs/<file>-<profile>)")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(fn=_train)
    sample = sub.add_parser("sample", help="generate text from a model trained by lmcore train")
    sample.add_argument("checkpoint", help="a run's output folder or its checkpoint.safetensors")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=500)
    sample.add_argument("--temperature", type=float, default=1.0, help="0: always the likeliest")
    sample.add_argument("--top-k", type=int, help="sample among the k likeliest tokens")
    sample.add_argument("--top-p", type=float, help="sample among the likeliest tokens holding p")
    sample.add_argument(
        "--repetition-penalty", type=float, default=1.0, help="above 1: fewer repeated tokens"
    )
    sample.add_argument("--seed", type=int, help="fix the draws")
    sample.set_defaults(fn=_sample)
    chat = sub.add_parser("chat", help="chat with SmolLM2-135M-Instruct (one turn a line of stdin)")
    chat.add_argument("--model", metavar="GGUF", help="a Llama GGUF file (default: SmolLM2's)")
    chat.add_argument("--system", help="a system prompt (default: the model's own)")
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.7, help="0: always the likeliest")
    chat.add_argument("--top-k", type=int, help="sample among the k likeliest tokens")
    chat.add_argument("--top-p", type=float, default=0.9, help="sample among tokens holding p")
    chat.add_argument(
        "--repetition-penalty", type=float, default=1.1, help="above 1: fewer repeated tokens"
    )
    chat.add_argument("--seed", type=int, help="fix the draws")
    chat.add_argument("--context", type=int, help="tokens of history kept (default: the model's)")
    chat.add_argument("--int8", action="store_true", help="int8 weights (quantize_model)")
    chat.set_defaults(fn=_chat)
    args = parser.parse_args(argv)
    if args.command not in ("train", "sample", "chat"):
        return args.fn(args)
    try:
        return args.fn(args)
    except (ValueError, OSError, RuntimeError, FloatingPointError) as error:
        print(f"lmcore {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
