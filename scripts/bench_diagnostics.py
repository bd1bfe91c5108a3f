"""What the init-time diagnostics add to a default job: `python scripts/bench_diagnostics.py`.

Times, on the default config (digits, MLP 2x256 ReLU, init=normal, 20 epochs), the diagnosis itself
(one forward + backward pass of the fixed 512-example batch), its PNG, and the 20-epoch training it
accompanies. Each is the minimum over repetitions (wall and CPU time), which is the most stable figure on
a shared machine.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from initsweep.core import data as datasets
from initsweep.core.config import validate
from initsweep.core.initializers import initialize
from initsweep.core.models import build_model, model_activation
from initsweep.core.trainer import fit
from initsweep.diagnostics.signal import diagnose, fixed_batch
from initsweep.report.plots import signal_propagation

CONF = Path(__file__).resolve().parents[1] / "conf"


def best_of(f: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(min wall s, min CPU s) of ``repeats`` calls, after one warm-up call."""
    f()
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        f()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def main() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = validate(OmegaConf.to_container(compose(config_name="config"), resolve=True))  # type: ignore[arg-type]
    data = datasets.load(config.data)

    def fresh_model() -> torch.nn.Module:
        torch.manual_seed(0)
        model = build_model(config.model, data.input_shape, data.num_classes)
        initialize(model, config.init, model_activation(model), batch=data.x_train)
        return model

    model = fresh_model()
    x, y = fixed_batch(data.x_train, data.y_train, config.diagnostics.batch_size)
    d = diagnose(model, x, y)
    png = Path(tempfile.mkdtemp(prefix="initsweep-bench-")) / "signal_propagation.png"
    diag = best_of(lambda: diagnose(model, x, y), 20)
    plot = best_of(lambda: signal_propagation([("epoch 0", d.layers, d.act_std, d.grad_std)], png), 5)
    train = best_of(lambda: list(fit(fresh_model(), data, config.trainer, config.seed)), 2)
    print(f"diagnose (batch {len(x)}):     wall {diag[0] * 1e3:7.1f} ms   cpu {diag[1] * 1e3:7.1f} ms")
    print(f"signal_propagation.png: wall {plot[0] * 1e3:7.1f} ms   cpu {plot[1] * 1e3:7.1f} ms")
    print(f"{config.trainer.epochs}-epoch training:     wall {train[0]:7.2f} s    cpu {train[1]:7.2f} s")
    print(
        f"diagnostics add {100 * (diag[0] + plot[0]) / train[0]:.1f}% to the training's wall time "
        f"({100 * diag[0] / train[0]:.1f}% without the PNG)"
    )


if __name__ == "__main__":
    main()
