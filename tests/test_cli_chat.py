"""``lmcore chat`` with piped input, on SmolLM2 (skipped when its wheel is missing)."""

import io
import sys

import pytest

from lmcore import cli
from lmcore.models.llama import smollm2_path


def test_chat_answers_each_line_with_history(monkeypatch, capsys):
    try:
        smollm2_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("What is the capital of France?\n\nAnd of Germany?\n")
    )
    argv = ["chat", "--temperature", "0", "--max-new-tokens", "8", "--context", "100"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "Paris" in lines[0] and "Berlin" in lines[1]


def test_chat_refuses_a_context_too_small(monkeypatch, capsys):
    try:
        smollm2_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello there, how are you today?\n"))
    assert cli.main(["chat", "--max-new-tokens", "40", "--context", "30"]) == 2
    assert "exceeds the context of 30" in capsys.readouterr().err
