"""Power laws for scaling studies: fit ``y = a * x ** (-alpha)`` on log-log axes, with an
uncertainty from the bootstrap.

Loss against parameters or compute tends to follow a straight line on log-log axes over
a range of sizes (Kaplan et al. 2020): ``log y = log a - alpha * log x``. A least-squares
line through a handful of points says little about how sure one can be, so
:func:`fit_power_law` also refits on bootstrap resamples of the points and reports the
spread of ``alpha`` and an interval for a prediction.

Example:
    >>> import numpy as np
    >>> x = np.array([1e3, 1e4, 1e5, 1e6])
    >>> fit = fit_power_law(x, 5.0 * x ** -0.1, seed=0)
    >>> round(fit.alpha, 6), round(fit.a, 6), round(fit.alpha_std, 6)
    (0.1, 5.0, 0.0)
    >>> round(float(fit.predict(1e7)), 4)               # 5 * 10 ** -0.7
    0.9976
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PowerLaw", "fit_power_law"]


@dataclass
class PowerLaw:
    """A fitted ``y = a * x ** (-alpha)``: the least-squares ``a`` and ``alpha`` on log-log
    axes, the standard deviation of ``alpha`` over bootstrap resamples, and the
    resamples' own ``(a, alpha)`` pairs for intervals."""

    a: float
    alpha: float
    alpha_std: float
    samples: np.ndarray = field(repr=False)  # (resamples, 2): a, alpha

    def predict(self, x):
        """``a * x ** (-alpha)``, the fitted line at ``x``."""
        return self.a * np.asarray(x, dtype=float) ** (-self.alpha)

    def interval(self, x, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` interval of the bootstrap fits' predictions at ``x``.

        Example:
            >>> x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
            >>> y = 2 * x ** -0.5 * np.array([1.01, 0.99, 1.0, 1.02, 0.98])
            >>> low, high = fit_power_law(x, y, seed=0).interval(32.0)
            >>> bool(low < 2 * 32 ** -0.5 < high)
            True
        """
        x = np.asarray(x, dtype=float)
        predictions = self.samples[:, :1] * x.reshape(1, -1) ** (-self.samples[:, 1:])
        tail = (1 - level) / 2
        low, high = np.quantile(predictions, [tail, 1 - tail], axis=0)
        return low.reshape(x.shape), high.reshape(x.shape)


def _line(log_x: np.ndarray, log_y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(log_x, log_y, 1)
    return float(np.exp(intercept)), float(-slope)


def fit_power_law(x, y, resamples: int = 1000, seed: int | None = None) -> PowerLaw:
    """Fit ``y = a * x ** (-alpha)`` by least squares on ``log y`` against ``log x``.

    The uncertainty comes from ``resamples`` bootstrap refits, each on points drawn with
    replacement from the given ones (draws with fewer than two distinct ``x`` are drawn
    again). With four or five points it is a rough guide, not a confidence level.

    Raises ValueError for fewer than three points or for values that are not positive.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"fit_power_law takes two 1-D arrays of one length, got {x.shape}, {y.shape}"
        )
    if x.size < 3:
        raise ValueError(f"fit_power_law needs at least three points, got {x.size}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power_law needs positive x and y (it fits on log-log axes)")
    log_x, log_y = np.log(x), np.log(y)
    a, alpha = _line(log_x, log_y)
    generator = np.random.default_rng(seed)
    samples = []
    while len(samples) < resamples:
        pick = generator.integers(0, x.size, x.size)
        if np.unique(x[pick]).size < 2:
            continue
        samples.append(_line(log_x[pick], log_y[pick]))
    samples = np.array(samples)
    return PowerLaw(a, alpha, float(samples[:, 1].std()), samples)
