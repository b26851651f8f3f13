"""Benchmarks run by ``lmcore bench NAME``: each compares lmcore side by side with a reference.

Each module here has ``run(quick: bool) -> list[dict]``, which prints its table and
returns its rows. Timings are printed, never asserted.

Example:
    $ lmcore bench tokenizer
"""

BENCHMARKS = {
    "tokenizer": "lmcore.bench.tokenizer",
    "ngram": "lmcore.bench.ngram",
    "lstm": "lmcore.bench.lstm",
    "training": "lmcore.bench.training",
    "gpt": "lmcore.bench.gpt",
    "kvcache": "lmcore.bench.kvcache",
    "gpu": "lmcore.bench.gpu",
    "llm": "lmcore.bench.llm",
}
