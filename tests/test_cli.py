"""The benchmark command runs end to end in its quick mode (timings are printed, never checked)."""

import pytest

from lmcore.bench import BENCHMARKS
from lmcore.cli import main


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_bench_quick_runs_and_prints_a_table(name, capsys):
    assert main(["bench", name, "--quick"]) == 0
    out = capsys.readouterr().out
    assert "device: " in out and "---" in out


def test_unknown_benchmark_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "nope"])
    assert "invalid choice" in capsys.readouterr().err
