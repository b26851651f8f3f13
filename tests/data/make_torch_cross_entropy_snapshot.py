"""Regenerate tests/data/torch_cross_entropy.npz: PyTorch's weighted cross-entropy.

tests/test_pytorch_surface.py checks ``lmcore.functional.cross_entropy(..., weight=)`` and
``nn.CrossEntropyLoss(weight)`` against these numbers where torch is not installed (it is
not an lmcore dependency). Nothing here imports lmcore.

Run from the repository root, in an environment with torch:

    python -m pip install torch
    python tests/data/make_torch_cross_entropy_snapshot.py

It writes (about 10 kB) float64 arrays: ``logits`` (7, 5), ``targets`` (7,) with two
ignored (-1), ``weight`` (5,), class probabilities ``soft`` (7, 5), and for every
reduction r in mean/sum/none and smoothing s in 0/0.2: ``loss_r_s`` and the gradient of
the summed loss with respect to the logits, ``grad_r_s``; the same for the probabilities
(``soft_loss_r_s``, ``soft_grad_r_s``).
"""

from __future__ import annotations

import numpy as np
import torch

rng = np.random.default_rng(0)
logits = rng.normal(size=(7, 5)) * 2
targets = np.array([0, 4, -1, 2, 2, 1, -1])
weight = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
soft = rng.dirichlet(np.ones(5), size=7)
out = {"logits": logits, "targets": targets, "weight": weight, "soft": soft}
for reduction in ("mean", "sum", "none"):
    for smoothing in (0.0, 0.2):
        for name, target in (("", torch.from_numpy(targets)), ("soft_", torch.from_numpy(soft))):
            x = torch.tensor(logits, requires_grad=True)
            loss = torch.nn.functional.cross_entropy(
                x,
                target,
                weight=torch.from_numpy(weight),
                ignore_index=-1,
                label_smoothing=smoothing,
                reduction=reduction,
            )
            loss.sum().backward()
            out[f"{name}loss_{reduction}_{smoothing}"] = loss.detach().numpy()
            out[f"{name}grad_{reduction}_{smoothing}"] = x.grad.numpy()
out["torch_version"] = np.array(torch.__version__)
np.savez_compressed("tests/data/torch_cross_entropy.npz", **out)
