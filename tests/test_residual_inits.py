"""Residual init families on the un-normalized residual MLP (conf/residual/, experiment=residual_inits): Fixup,
ReZero/SkipInit and zero-gamma start every block as the identity and train a deep stack; He init alone does not."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose, train_history
from initsweep.core.config import validate
from initsweep.core.initializers import initialize
from initsweep.core.models import ResidualMLP, build_model

FAMILIES = ("fixup", "rezero", "zero_branch")


def _built(residual: str, *overrides: str) -> tuple[ResidualMLP, torch.Tensor]:
    config = validate(
        OmegaConf.to_container(compose(["experiment=residual_inits", f"residual={residual}", *overrides]))
    )
    torch.manual_seed(0)
    model = build_model(config.model, (64,), 10)
    initialize(model, config.init, "relu")
    assert isinstance(model, ResidualMLP)
    return model, torch.randn(32, 64)


def test_rezero_adds_one_learnable_zero_scalar_per_block() -> None:
    model = ResidualMLP(input_shape=(20,), num_classes=3, width=16, blocks=3, layer_norm=False, rezero=True)
    alphas = {n: p for n, p in model.named_parameters() if n.endswith("alpha")}
    assert list(alphas) == ["blocks.0.alpha", "blocks.1.alpha", "blocks.2.alpha"]
    assert all(p.item() == 0.0 for p in alphas.values())
    model(torch.randn(8, 20)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().item() > 0 for p in alphas.values())  # alpha learns


@pytest.mark.parametrize("residual", FAMILIES)
def test_every_family_starts_each_block_as_the_identity(residual: str) -> None:
    model, x = _built(residual)
    h = model.inp(x)
    with torch.no_grad():
        assert torch.equal(model.blocks(h), h)


def test_he_alone_grows_the_signal_and_fixup_scales_by_the_depth() -> None:
    model, x = _built("he")
    with torch.no_grad():
        h = model.inp(x)
        assert model.blocks(h).std() > 1e6 * h.std()  # each block adds its full branch: about x1.4 per block
    config = compose(["experiment=residual_inits", "residual=fixup"])
    scale = next(r["scale"] for r in config.init.rules if "scale" in r)
    assert scale == pytest.approx(config.model.blocks ** (-1 / (2 * 2 - 2)))  # L^(-1/(2m-2)), m = 2
    fixup, _ = _built("fixup")
    he, _ = _built("he")
    assert torch.allclose(fixup.blocks[0].fc1.weight, he.blocks[0].fc1.weight * scale)  # the same draws, scaled
    assert fixup.out.weight.abs().max() == 0


@pytest.mark.parametrize(("residual", "trains"), [("he", False), ("fixup", True), ("rezero", True)])
def test_a_deep_unnormalized_stack_trains_with_fixup_or_rezero_and_not_with_he(residual: str, trains: bool) -> None:
    """30 blocks of 32 units, 4 epochs (the docs run: 100 blocks, 64 units, 20 epochs)."""
    quick = [
        "experiment=residual_inits",
        f"residual={residual}",
        "model.blocks=30",
        "model.width=32",
        "trainer.epochs=4",
    ]
    if residual == "fixup":
        quick.append(f"init.rules.1.scale={30**-0.5}")  # L^(-1/2) for 30 blocks
    history = train_history(quick)
    best = max((e.val_acc for e in history if math.isfinite(e.val_acc)), default=0.0)
    assert (best >= 0.85) == trains, [round(e.val_acc, 3) for e in history]
