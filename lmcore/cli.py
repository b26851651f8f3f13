"""The ``lmcore`` command line.

Example:
    $ lmcore info
    $ lmcore bench tokenizer
    $ lmcore bench all --quick
    $ lmcore bench gpu --write results.json
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lmcore import backend, config
from lmcore.bench import BENCHMARKS
from lmcore.bench.common import machine


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmcore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the version, profile and device").set_defaults(fn=_info)
    bench = sub.add_parser("bench", help="run a benchmark side by side with its reference")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"])
    bench.add_argument("--quick", action="store_true", help="a small run, for a smoke test")
    bench.add_argument("--write", metavar="JSON", help="gpu: also write the results to this file")
    bench.set_defaults(fn=_bench)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
