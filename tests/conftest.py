"""Shared test settings: every test runs in the quick profile, from the repository root."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LMCORE_PROFILE", "quick")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
