"""Regenerate tests/data/torch_recurrent.npz: PyTorch's RNN, LSTM and GRU layers.

tests/test_recurrent.py checks lmcore's recurrent layers (two layers, uni- and
bidirectional) against these numbers where torch is not installed (it is not an lmcore
dependency). Nothing here imports lmcore.

Run from the repository root, in an environment with torch:

    python -m pip install torch
    python tests/data/make_torch_recurrent_snapshot.py

For each ``kind`` in rnn_tanh, rnn_relu, lstm, gru and ``d`` in 1, 2 (directions) it
stores, float64, under the prefix ``{kind}_{d}/``: every parameter (PyTorch's names), the
input ``x`` (B=4, T=6, I=3, batch first), the initial states ``h0`` (and ``c0``), the
output, the final states ``h_n`` (and ``c_n``), and ``grad/<name>`` of
``output.sum() + (output * output).sum()`` for every parameter. About 60 kB.
"""

from __future__ import annotations

import numpy as np
import torch

out = {}
for kind in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
    name = kind.split("_")[0]
    for directions in (1, 2):
        extra = {"nonlinearity": kind.split("_")[1]} if name == "rnn" else {}
        torch.manual_seed(0)
        layer = getattr(torch.nn, name.upper())(
            3, 5, num_layers=2, batch_first=True, bidirectional=directions == 2, **extra
        ).double()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 6, 3))
        states = [rng.standard_normal((2 * directions, 4, 5)) for _ in range(1 + (name == "lstm"))]
        hx = tuple(map(torch.tensor, states)) if name == "lstm" else torch.tensor(states[0])
        output, final = layer(torch.tensor(x), hx)
        (output.sum() + (output * output).sum()).backward()
        prefix = f"{kind}_{directions}/"
        out[prefix + "x"] = x
        out[prefix + "h0"] = states[0]
        if name == "lstm":
            out[prefix + "c0"] = states[1]
        out[prefix + "output"] = output.detach().numpy()
        finals = final if name == "lstm" else (final,)
        for key, value in zip(("h_n", "c_n"), finals):
            out[prefix + key] = value.detach().numpy()
        for key, param in layer.named_parameters():
            out[prefix + key] = param.detach().numpy()
            out[prefix + "grad/" + key] = param.grad.numpy()

np.savez_compressed("tests/data/torch_recurrent.npz", **out)
print(f"wrote tests/data/torch_recurrent.npz: {len(out)} arrays")
