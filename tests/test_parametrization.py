"""Parametrizations (sp | ntk | mup): the rule table, SP exactly as before, muP's coordinate check (one real
optimizer step on random data at widths 64, 256 and 1024), schedules over per-group lrs, refusals, and the
params a job logs."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, compose
from initsweep.core import data as datasets
from initsweep.core import parametrization as P
from initsweep.core.config import ConfigError, ParametrizationConfig, TrainerConfig, validate
from initsweep.core.initializers import initialize
from initsweep.core.models import CNN, MLP, ResidualMLP, loss_fn
from initsweep.core.trainer import fit, lr_factor, make_optimizer, param_groups

WIDTHS = (64, 256, 1024)


def test_rule_table():
    assert P.rule("mup", "input", 4, 4) == P.Rule(1, 4, 1)
    assert P.rule("mup", "hidden", 4, 4) == P.Rule(1, 1, 0.25)
    assert P.rule("mup", "hidden", 4, 8) == P.Rule(1, 2, 0.25)  # a wider fan-out: SGD lr x m_out / m_in
    assert P.rule("mup", "output", 4, 10 / 64) == P.Rule(0.5, 0.25, 0.25)
    assert P.rule("mup", "vector", 4, 4) == P.Rule(1, 4, 1)
    assert P.rule("ntk", "hidden", 4, 4) == P.Rule(1, 0.25, 0.5)
    assert P.rule("ntk", "input", 4, 4) == P.Rule() == P.rule("ntk", "vector", 4, 4)
    assert P.rule("mup", "output", 4, 4).lr("sgd") == 0.25 and P.rule("mup", "input", 4, 4).lr("adam") == 1
    for name in ("sp", "ntk", "mup"):
        assert P.rule(name, "output_bias", 16, 16) == P.Rule()  # its size does not grow with width
        for role in P.ROLES:  # at the base width every parametrization is SP
            assert P.rule(name, role) == P.Rule()
            assert P.rule("sp", role, 16, 16) == P.Rule()


def test_roles_of_the_built_in_models_and_the_logged_multipliers():
    kinds, _ = P.roles(MLP((64,), 10, depth=2, width=256))
    assert kinds == {
        "fc1.weight": "input", "fc1.bias": "vector", "fc2.weight": "hidden", "fc2.bias": "vector",
        "out.weight": "output", "out.bias": "output_bias",
    }  # fmt: skip
    kinds, _ = P.roles(ResidualMLP((64,), 10, width=128, blocks=1))
    assert kinds["inp.weight"] == "input" and kinds["blocks.0.fc2.weight"] == "hidden"
    assert kinds["blocks.0.norm.weight"] == kinds["norm.bias"] == "vector" and kinds["out.weight"] == "output"
    plan = P.plan(MLP((64,), 10, width=256), ParametrizationConfig(name="mup", base_width=64))
    assert plan.width_mult == 4
    assert plan.params("adam") == {
        "parametrization.width_mult": "4",
        "parametrization.lr_mult.input": "1",
        "parametrization.lr_mult.hidden": "0.25",
        "parametrization.lr_mult.output": "0.25",
        "parametrization.lr_mult.vector": "1",
        "parametrization.lr_mult.output_bias": "1",
    }
    assert plan.params("sgd")["parametrization.lr_mult.input"] == "4"
    sp = P.plan(MLP((64,), 10), ParametrizationConfig())
    assert sp.lr_multipliers("adam") == {} and sp.params("adam") == {}


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (CNN((1, 8, 8), 10), "'conv1.weight' of a Conv2d"),
        (MLP((64,), 10, depth=0), "at least one hidden layer"),
        (ResidualMLP((64,), 10, blocks=1, rezero=True), "'blocks.0.alpha'"),
    ],
)
def test_models_mup_cannot_classify_are_refused_naming_the_key(model, says):
    with pytest.raises(ConfigError, match="parametrization.name = 'mup'") as e:
        P.plan(model, ParametrizationConfig(name="mup"))
    assert says in str(e.value) and "use parametrization=sp" in str(e.value)
    assert P.plan(model, ParametrizationConfig()).rules == {}  # sp takes any model


def test_a_bad_parametrization_is_a_config_error_naming_the_key_and_the_choices():
    raw = OmegaConf.to_container(compose(["parametrization.name=mupp"]), resolve=True)
    with pytest.raises(ConfigError, match=r"parametrization\.name = 'mupp'.*'sp', 'ntk' or 'mup'"):
        validate(raw)
    raw = OmegaConf.to_container(compose(["parametrization=mup", "parametrization.base_width=0"]), resolve=True)
    with pytest.raises(ConfigError, match=r"parametrization\.base_width = 0"):
        validate(raw)
    assert validate(OmegaConf.to_container(compose([]), resolve=True)).parametrization.name == "sp"
    # a model mup cannot classify: refused by the check every job of a multirun gets before the first starts
    from initsweep.jobs.resources import check_buildable

    config = validate(OmegaConf.to_container(compose(["model=cnn", "parametrization=mup"]), resolve=True))
    with pytest.raises(ConfigError, match=r"parametrization\.name = 'mup': parameter 'conv1\.weight'"):
        check_buildable(config)


def _digits():
    config = validate(OmegaConf.to_container(compose([]), resolve=True))
    return datasets.load(config.data)


def _trained(data, width: int, cfg: TrainerConfig, p: ParametrizationConfig | None, on_checkpoint=None, resume=None):
    """(model, epochs) of an MLP on ``data`` initialized (kaiming_normal) and trained as a job does (``resume``: from
    that state); ``p`` None: the trainer as it was before parametrizations (no plan, no multipliers)."""
    torch.manual_seed(0)
    model = MLP(data.input_shape, data.num_classes, width=width)
    spec = validate(OmegaConf.to_container(compose(["init=kaiming_normal"]), resolve=True)).init
    initialize(model, spec, "relu")
    multipliers = None
    if p is not None:
        plan = P.plan(model, p)
        P.scale_init(model, plan, [])
        multipliers = plan.lr_multipliers(cfg.optimizer)
    epochs = list(fit(model, data, cfg, 0, resume=resume, on_checkpoint=on_checkpoint, lr_multipliers=multipliers))
    return model, epochs


def test_sp_leaves_the_weights_and_the_optimizer_exactly_as_before():
    data = _digits()
    cfg = TrainerConfig(optimizer="adam", lr=0.003, epochs=2, schedule="cosine")
    before, hist_before = _trained(data, 96, cfg, None)
    after, hist_after = _trained(data, 96, cfg, ParametrizationConfig(name="sp"))
    measured = lambda hist: [dataclasses.replace(e, epoch_s=0, interval_s=0) for e in hist]  # noqa: E731
    assert measured(hist_after) == measured(hist_before)  # every metric of every epoch but its time, bit for bit
    for (k, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert torch.equal(a, b), k
    plain = make_optimizer(before.parameters(), cfg).state_dict()
    planned = P.plan(after, ParametrizationConfig(name="sp")).lr_multipliers("adam")
    assert make_optimizer(param_groups(after, cfg.lr, planned), cfg).state_dict() == plain  # one group, no lr_mult


def test_a_schedule_scales_every_parameter_group_and_a_resumed_run_keeps_them():
    data = _digits()
    cfg = TrainerConfig(optimizer="adam", lr=0.01, epochs=2, schedule="cosine", warmup_epochs=0.5, checkpoint_every=1)
    mup = ParametrizationConfig(name="mup")
    states = []
    model, hist = _trained(data, 256, cfg, mup, on_checkpoint=states.append)
    (state,) = states  # after epoch 1
    groups = state.optimizer["param_groups"]
    assert sorted(g["lr_mult"] for g in groups) == [0.25, 1.0]  # hidden and output; input and vectors
    n = len(data.x_train)
    per_epoch = math.ceil(n / 64)
    factor = lr_factor(state.step - 1, per_epoch, 2 * per_epoch, cfg)
    assert 0 < factor < 1
    for g in groups:
        assert g["lr"] == pytest.approx(cfg.lr * g["lr_mult"] * factor, rel=1e-12)
    assert hist[0].lr == pytest.approx(cfg.lr * factor, rel=1e-12)  # the metric is the base lr
    assert hist[-1].val_acc > 0.9  # and it learns
    resumed, rest = _trained(data, 256, cfg, mup, resume=state)  # from the state after epoch 1: the same run
    assert [e.epoch for e in rest] == [2] and rest[0].train_loss == hist[-1].train_loss
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))


def _one_step(width: int, name: str, optimizer: str, lr: float) -> tuple[float, float, float]:
    """(std of the logits at init, mean |change| of the last hidden layer's features, of the logits) after
    one step of ``optimizer`` on a fixed random batch, for an MLP of ``width`` (biases 0, PyTorch's fan-in init)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 20, generator=g), torch.randint(0, 10, (256,), generator=g)
    model = MLP((20,), 10, depth=2, width=width)
    for layer in (model.fc1, model.fc2, model.out):
        torch.nn.init.zeros_(layer.bias)
    plan = P.plan(model, ParametrizationConfig(name=name, base_width=64))
    P.scale_init(model, plan, [])
    cfg = TrainerConfig(optimizer=optimizer, lr=lr, momentum=0.0)
    opt = make_optimizer(param_groups(model, lr, plan.lr_multipliers(optimizer)), cfg)

    def features() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return model.act2(model.fc2(model.act1(model.fc1(x)))), model(x)

    h0, z0 = features()
    loss_fn(model(x), y).backward()
    opt.step()
    h1, z1 = features()
    return z0.std().item(), (h1 - h0).abs().mean().item(), (z1 - z0).abs().mean().item()


@pytest.mark.parametrize(("optimizer", "lr"), [("adam", 0.01), ("sgd", 0.1)])
def test_mup_coordinate_check_updates_are_width_independent_and_sp_grows(optimizer, lr):
    mup = [_one_step(w, "mup", optimizer, lr) for w in WIDTHS]
    sp = [_one_step(w, "sp", optimizer, lr) for w in WIDTHS]
    # Output at init: x 1/sqrt(width multiplier) under muP (std x 0.5 at 256, 0.25 at 1024); SP's stays.
    assert mup[1][0] / mup[0][0] == pytest.approx(0.5, rel=0.2)
    assert mup[2][0] / mup[0][0] == pytest.approx(0.25, rel=0.2)
    assert 0.8 < sp[2][0] / sp[0][0] < 1.25
    for k in (1, 2):  # the hidden features' and the logits' change in one step: the same at every width
        sizes = [m[k] for m in mup]
        assert max(sizes) / min(sizes) < 1.5, (k, sizes)
    assert sp[2][2] / sp[0][2] > 8  # SP: the logits' change grows with width (x66 Adam, x12 SGD measured)
    if optimizer == "adam":
        assert sp[2][1] / sp[0][1] > 8  # and Adam's hidden update (x14 measured)


def test_a_mup_job_builds_its_multipliers_params_and_output_init(tmp_path, capsys):
    from initsweep.jobs.job import JobContext, _build

    overrides = ["experiment=mup_transfer", "parametrization=mup", "model.width=256", "trainer.epochs=1"]
    raw = OmegaConf.to_container(compose(overrides), resolve=True)
    _, model, stats, params, lr_mults = _build(validate(raw), raw, JobContext())  # as a job does, before its run
    assert raw["parametrization"] == {"name": "mup", "base_width": 64} and raw["trainer"]["optimizer"] == "adam"
    assert params["parametrization.width_mult"] == "4" and params["parametrization.lr_mult.hidden"] == "0.25"
    assert lr_mults["fc2.weight"] == 0.25 and lr_mults["fc1.weight"] == 1.0
    # kaiming_normal's std sqrt(2 / 256) for the output layer, x 1/sqrt(4) under muP: promised and measured
    out = next(s for s in stats if s.layer == "out")
    assert out.weight_std_expected == pytest.approx(math.sqrt(2 / 256) / 2)
    assert (
        out.weight_std == pytest.approx(model.out.weight.std().item()) == pytest.approx(math.sqrt(2 / 256) / 2, rel=0.1)
    )


def _run(name: str, width: int, lr: float, loss: float) -> SimpleNamespace:
    params = {"parametrization.name": name, "model.width": str(width), "trainer.lr": str(lr)}
    return SimpleNamespace(data=SimpleNamespace(params=params, metrics={"train/loss_final": loss}))


def test_lr_transfer_finds_each_widths_best_lr_and_draws_the_figure(tmp_path, capsys):
    from initsweep.report import lr_transfer
    from initsweep.report.heatmap import HeatmapError

    losses = {  # (width, lr): loss; SP's best lr falls with width, muP's stays; nan: diverged
        ("sp", 64): [0.3, 0.1, 0.2], ("sp", 1024): [0.05, 0.2, math.nan],
        ("mup", 64): [0.3, 0.1, 0.2], ("mup", 1024): [0.2, 0.05, 0.1],
    }  # fmt: skip
    runs = [_run(n, w, lr, v) for (n, w), row in losses.items() for lr, v in zip((0.001, 0.01, 0.1), row)]
    runs += [_run("sp", 64, 0.01, 0.5)]  # a second seed: the cell is the mean (0.3), and lr 0.1 wins
    sp, mup = lr_transfer.transfers(runs, "train/loss_final")
    assert (sp.name, mup.name) == ("sp", "mup")
    assert sp.best_lr == {64.0: 0.1, 1024.0: 0.001} and lr_transfer.shift(sp) == pytest.approx(100)
    assert mup.best_lr == {64.0: 0.01, 1024.0: 0.01} and lr_transfer.shift(mup) == 1
    assert lr_transfer.table([sp, mup]).splitlines()[2] == "| sp | 0.1 | 0.001 | 100 x |"
    with pytest.raises(HeatmapError, match="no run has a finite val/acc_best"):
        lr_transfer.transfers(runs, "val/acc_best")
    path = lr_transfer.draw([sp, mup], tmp_path / "t.png", "test")
    assert 10_000 < path.stat().st_size < 150_000
    # scripts/report.py --lr-transfer: the table on stdout, the figure in the report's directory
    spec = importlib.util.spec_from_file_location("report_script", ROOT / "scripts" / "report.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script._lr_transfer(runs, "train/loss_final", tmp_path, "t").name == "lr_transfer_train_loss_final.png"
    assert "| mup | 0.01 | 0.01 | 1 x |" in capsys.readouterr().out
    unswept = SimpleNamespace(data=SimpleNamespace(params={"trainer.lr": "0.1"}, metrics={}))
    with pytest.raises(script.Impossible, match="no run has numeric params trainer.lr and model.width"):
        script._lr_transfer([unswept], "train/loss_final", tmp_path, "t")
    with pytest.raises(script.Impossible, match="no runs: sweep trainer.lr and model.width"):
        script._lr_transfer([], "train/loss_final", tmp_path, "t")
