"""The power-law fit of lmcore.scaling and the distinct-n metric of lmcore.metrics."""

import math

import numpy as np
import pytest

from lmcore.metrics import distinct_n
from lmcore.scaling import fit_power_law


def test_power_law_recovers_exact_parameters():
    x = np.logspace(3, 7, 5)
    fit = fit_power_law(x, 3.0 * x**-0.076, seed=1)
    assert math.isclose(fit.alpha, 0.076, rel_tol=1e-9) and math.isclose(fit.a, 3.0, rel_tol=1e-9)
    assert fit.alpha_std < 1e-9
    assert np.allclose(fit.predict(x), 3.0 * x**-0.076)


def test_power_law_uncertainty_grows_with_noise():
    x = np.logspace(3, 6, 5)
    noise = np.random.default_rng(0).normal(0, 1, 5)
    small = fit_power_law(x, 2 * x**-0.1 * np.exp(0.01 * noise), seed=0)
    large = fit_power_law(x, 2 * x**-0.1 * np.exp(0.1 * noise), seed=0)
    assert 0 < small.alpha_std < large.alpha_std
    low, high = large.interval([1e7])
    assert low[0] < large.predict(1e7) < high[0]


def test_power_law_refuses_bad_input():
    with pytest.raises(ValueError, match="three points"):
        fit_power_law([1, 2], [1, 2])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2, 3], [1, 0, 2])


def test_distinct_n():
    assert distinct_n(["aaaa"], 1) == 0.25
    assert distinct_n(["abcd", "abce"], 3) == 0.75  # "abc" twice
    assert distinct_n([[1, 2], [1, 2]], 2) == 0.5
    assert math.isnan(distinct_n(["a"], 2))
    with pytest.raises(TypeError):
        distinct_n("abc", 1)
    with pytest.raises(ValueError):
        distinct_n(["abc"], 0)
