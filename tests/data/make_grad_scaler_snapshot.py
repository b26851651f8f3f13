"""Regenerate tests/data/grad_scaler_torch.json: what ``torch.amp.GradScaler`` does over a
run of steps in which some gradients overflow.

tests/test_mixed_precision.py replays the same steps with lmcore's GradScaler and checks
the scale after every step, which steps were skipped (the weights did not move) and the
final ``state_dict`` against this file, so the comparison stays tested where `torch` is
not installed (it is not an lmcore dependency); where it is, the test also runs
:func:`run` live. Nothing here imports lmcore: the expected numbers come from PyTorch alone.

Run from the repository root, in an environment with `torch`:

    python -m pip install torch
    python tests/data/make_grad_scaler_snapshot.py

Each step computes ``loss = (w * g).sum()`` for a weight w of 4 float32 numbers and the
step's row g of GRADIENTS (inf and NaN in some rows), backpropagates the scaled loss, and
lets the scaler step an SGD optimizer (lr 0.5) and update. The growth and backoff factors
are not powers of two, so the float32 rounding of the scale is checked too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SETTINGS = {"init_scale": 1024.0, "growth_factor": 1.7, "backoff_factor": 0.3, "growth_interval": 3}
INF, NAN = math.inf, math.nan
GRADIENTS = [
    [0.5, -1.0, 2.0, 0.25],
    [1.0, INF, 0.5, 0.5],
    [-INF, 1.0, 1.0, 1.0],
    [0.25, 0.25, -0.5, 1.5],
    [1.0, -2.0, 0.125, 3.0],
    [0.75, 0.5, 0.5, -1.0],
    [2.0, 1.0, -0.25, 0.5],
    [NAN, 1.0, 1.0, 1.0],
    [0.5, 0.5, 0.5, 0.5],
    [-1.0, 0.25, 2.0, 1.0],
    [0.125, -0.75, 1.0, 0.5],
    [1.5, 1.0, 0.25, -0.5],
]


def run() -> dict:
    """The scale and the weights after each step, and the final state_dict."""
    weight = torch.nn.Parameter(torch.ones(4))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    scaler = torch.amp.GradScaler("cpu", **SETTINGS)
    scales, weights = [], []
    for row in GRADIENTS:
        optimizer.zero_grad()
        loss = (weight * torch.tensor(row, dtype=torch.float32)).sum()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scales.append(scaler.get_scale())
        weights.append(weight.detach().tolist())
    return {
        "settings": SETTINGS,
        "gradients": [[str(g) if not math.isfinite(g) else g for g in row] for row in GRADIENTS],
        "scales": scales,
        "weights": weights,
        "state_dict": scaler.state_dict(),
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    path = HERE / "grad_scaler_torch.json"
    path.write_text(json.dumps(run(), indent=1) + "\n")
    print(f"wrote {path}")
