"""Shared test settings: the quick profile, the CPU by default, the repository root."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LMCORE_PROFILE", "quick")
# Tests build on the CPU unless they ask for the GPU themselves (the GPU tests do, and skip
# cleanly where there is none), so the same suite means the same thing on every machine.
os.environ["LMCORE_DEVICE"] = "cpu"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
