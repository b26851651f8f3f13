"""Device and profile selection: one setting each, read in one place, with clear errors."""

import sys
import types

import numpy as np
import pytest

from lmcore import backend, config


@pytest.fixture
def no_cupy_cache():
    backend._cupy.cache_clear()
    yield
    backend._cupy.cache_clear()


def test_cpu_is_numpy(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")
    assert backend.device() == "cpu" and backend.xp() is np
    assert backend.describe().startswith("device: cpu (NumPy ")
    assert backend.get_array_module(np.zeros(2)) is np


def test_unknown_device_names_the_choices(monkeypatch):
    monkeypatch.setenv("LMCORE_DEVICE", "gpu")
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        backend.device()


def test_cupy_installed_without_a_gpu_means_cpu(monkeypatch, no_cupy_cache):
    # CuPy imports on a machine without a GPU and only fails at the first allocation,
    # so the backend must ask cupy.cuda.is_available(), not rely on the import.
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delenv("LMCORE_DEVICE", raising=False)
    assert not backend.gpu_available()
    assert backend.device() == "cpu"
    monkeypatch.setenv("LMCORE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no usable GPU.*LMCORE_DEVICE=cpu"):
        backend.device()


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_cuda_when_present(monkeypatch):
    monkeypatch.delenv("LMCORE_DEVICE", raising=False)
    assert backend.device() == "cuda"
    assert backend.describe().startswith("device: cuda (")


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("LMCORE_PROFILE", "standard")
    assert config.profile() == "standard"
    assert config.pick(quick=1, standard=2, full=3) == 2
    monkeypatch.setenv("LMCORE_PROFILE", "full")
    assert config.pick(quick=1, standard=2) == 2  # full falls back to standard
    monkeypatch.setenv("LMCORE_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick, standard, full"):
        config.profile()


def test_profile_default_follows_the_device(monkeypatch):
    monkeypatch.delenv("LMCORE_PROFILE", raising=False)
    monkeypatch.setenv("LMCORE_DEVICE", "cpu")
    assert config.profile() == "standard"


def test_command_line_reports_version_profile_and_device(capsys, monkeypatch):
    from lmcore.cli import main

    monkeypatch.setenv("LMCORE_DEVICE", "cpu")
    monkeypatch.setenv("LMCORE_PROFILE", "quick")
    assert main(["info"]) == 0
    assert "profile: quick; device: cpu" in capsys.readouterr().out
