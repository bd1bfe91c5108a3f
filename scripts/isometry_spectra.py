"""The Saxe et al. 2014 spectra of docs/reproductions.md: hidden-to-hidden Jacobian (diag/hidden_sv_*) and the
end-to-end one (diag/jacobian_sv_mean) of linear MLPs at init, orthogonal against LeCun normal, widths 64 and
256, depths 2, 8, 32, 48, seeds 0-2 (means over seeds). A few seconds to a minute on a CPU.

    PYTHONPATH=src python scripts/isometry_spectra.py
"""

from __future__ import annotations

import statistics
from types import SimpleNamespace

import torch

from initsweep.core.initializers import initialize
from initsweep.core.models import MLP
from initsweep.diagnostics.isometry import hidden_isometry, isometry_metrics


def _spec(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, params={}, bias="zeros", bias_value=0.0, output=None, output_params={}, rules=[])


def main() -> None:
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))  # a linear net's Jacobian ignores x
    keys = ("diag/hidden_sv_mean", "diag/hidden_sv_std", "diag/hidden_sv_min", "diag/hidden_sv_max")
    print("width depth init          hidden: mean     std      min     max    mean sq | end to end: mean")
    for width in (64, 256):
        for depth in (2, 8, 32, 48):
            for name in ("orthogonal", "lecun_normal"):
                rows = []
                for seed in (0, 1, 2):
                    torch.manual_seed(seed)
                    model = MLP((64,), 10, depth=depth, width=width, activation="linear")
                    initialize(model, _spec(name), "linear")
                    hidden, _ = hidden_isometry(model, x, "linear")
                    end = isometry_metrics(model, x[:4])["diag/jacobian_sv_mean"]
                    rows.append([*(hidden[k] for k in keys), hidden["diag/hidden_sq_sv_mean"], end])
                m = [statistics.mean(column) for column in zip(*rows)]
                print(
                    f"{width:5d} {depth:5d} {name:13s} {m[0]:12.4f} {m[1]:8.1e} {m[2]:7.3f} {m[3]:7.3f}"
                    f" {m[4]:8.3f} | {m[5]:.3f}"
                )


if __name__ == "__main__":
    main()
