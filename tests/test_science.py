"""Known answers for issue 15's keys and metrics: model shapes, output heads, data options, the training
loop's steps / schedule / evaluation, the honest summary metrics, isometry and override comparison."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import compose, train_history
from initsweep.core import data as datasets
from initsweep.core.config import ConfigError, MetricsConfig, TrainerConfig, validate
from initsweep.core.models import build_model, loss_fn, predict
from initsweep.core.overrides import same_override, varying
from initsweep.core.trainer import BestState, EpochMetrics, chance_accuracy, evaluate, lr_factor, summarize
from initsweep.diagnostics.isometry import isometry_metrics
from initsweep.jobs.job import run_name


def _config(overrides):
    return validate(OmegaConf.to_container(compose(overrides), resolve=True))


def _shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d))]


def test_unequal_widths_and_sigmoid_head():
    cfg = _config(["data=circles", "model.widths=[10,5]", "model.output=sigmoid"])
    model = build_model(cfg.model, (2,), 2)
    assert _shapes(model) == [(10, 2), (5, 10), (1, 5)]
    # model.width / model.depth stay the shorthand
    assert _shapes(build_model(_config(["model.depth=1", "model.width=7"]).model, (64,), 10)) == [(7, 64), (10, 7)]


def test_sigmoid_head_needs_two_classes():
    with pytest.raises(ConfigError, match="model.output = 'sigmoid'.*two classes"):
        build_model(_config(["model.output=sigmoid"]).model, (64,), 10)


def test_binary_cross_entropy_and_prediction_known_answers():
    logits, y = torch.tensor([[0.0], [2.0], [-1.0]]), torch.tensor([1, 1, 1])
    expected = (math.log(2) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 3
    assert loss_fn(logits, y).item() == pytest.approx(expected)
    assert predict(logits).tolist() == [0, 1, 0]
    assert loss_fn(torch.zeros(4, 10), torch.arange(4)).item() == pytest.approx(math.log(10))


def test_cnn_depth_repeats_the_last_channel_count():
    cfg = _config(["model=cnn", "model.depth=5", "model.channels=[4,8]"])
    convs = [s for s in _shapes(build_model(cfg.model, (1, 8, 8), 10)) if len(s) == 4]
    assert [s[0] for s in convs] == [4, 8, 8, 8, 8]
    assert len(build_model(_config(["model=cnn", "model.depth=1"]).model, (1, 8, 8), 10)[0].weight.shape) == 4


def test_unstandardized_data_and_no_validation_split():
    raw = datasets.load(_config(["data=circles", "data.standardize=false"]).data)
    std = datasets.load(_config(["data=circles"]).data)
    assert abs(std.x_train.mean().item()) < 1e-5
    assert raw.x_train.abs().max().item() < 1.6  # make_circles' radius 1 plus noise: not rescaled
    assert not torch.allclose(raw.x_train.std(0), torch.ones(2), atol=0.05)
    none = datasets.load(_config(["data=circles", "data.val_fraction=0"]).data)
    assert none.val_is_train and none.x_val is none.x_train
    assert len(none.x_train) == 850 and len(none.x_test) == 150


def test_full_batch_steps_and_eval_every():
    hist = train_history(["trainer.batch_size=full", "trainer.steps=7", "trainer.eval_every=3"])
    assert [h.epoch for h in hist] == [3, 6, 7]  # one step per epoch; every 3rd epoch and the last
    # 64-example batches of about 1257 training digits: 20 steps per epoch, so 30 steps end in epoch 2.
    assert [h.epoch for h in train_history(["trainer.steps=30"])] == [1, 2]
    with pytest.raises(ConfigError, match="trainer.batch_size"):
        _config(["trainer.batch_size=half"])


def test_lr_schedule_known_answers():
    warm = TrainerConfig(warmup_epochs=2, schedule="cosine")
    assert lr_factor(0, 10, 120, warm) == pytest.approx(1 / 20)
    assert lr_factor(19, 10, 120, warm) == pytest.approx(1.0)
    assert lr_factor(20, 10, 120, warm) == pytest.approx(1.0)
    assert lr_factor(70, 10, 120, warm) == pytest.approx(0.5)  # halfway through the post-warm-up steps
    step = TrainerConfig(schedule="step", step_epochs=2, gamma=0.5)
    assert [lr_factor(s, 10, 100, step) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(99, 10, 100, TrainerConfig()) == 1.0
    hist = train_history(["trainer.schedule=step", "trainer.step_epochs=1", "trainer.gamma=0.5", "trainer.epochs=2"])
    assert [h.lr for h in hist] == pytest.approx([0.01, 0.005])


def test_train_accuracy_is_a_full_pass_at_the_epochs_end():
    hist = train_history(["trainer.epochs=2"])
    # A full pass after the epoch: a multiple of 1/n; the running loss is logged beside it.
    n = len(datasets.load(_config([]).data).y_train)
    assert hist[-1].train_acc * n == pytest.approx(round(hist[-1].train_acc * n))
    assert math.isfinite(hist[-1].train_loss_running) and hist[-1].train_loss != hist[-1].train_loss_running


def _epochs(accs, losses=None):
    losses = losses or [2.0] * len(accs)
    return [EpochMetrics(i + 1, losses[i], 0.5, 1.0, a, 0.1) for i, a in enumerate(accs)]


def test_a_run_that_never_leaves_chance_has_no_learning_speed():
    s = summarize(_epochs([0.1, 0.1, 0.1]), 2.3, 0.1, chance_acc=0.1, chance_loss=math.log(10))
    assert math.isnan(s["val/epochs_to_learn"]) and math.isnan(s["val/epochs_to_90pct"])
    assert math.isnan(s["train/epochs_to_loss"]) and s["train/loss_threshold"] == pytest.approx(math.log(10) / 2)
    assert s["val/collapsed"] == 0.0


def test_learning_speed_collapse_and_loss_threshold_known_answers():
    hist = _epochs([0.2, 0.6, 0.9, 0.5], losses=[2.0, 1.5, 0.9, 1.2])
    s = summarize(hist, 1.0, 0.5, at_best=(0.3, 0.88), chance_acc=0.1, cfg=MetricsConfig(loss_threshold=1.0))
    assert s["val/learn_target"] == pytest.approx(0.55) and s["val/epochs_to_learn"] == 2
    assert s["val/epochs_to_90pct"] == 3 and s["val/epoch_best"] == 3
    assert s["val/acc_drop"] == pytest.approx(0.4) and s["val/collapsed"] == 1.0
    assert s["train/epochs_to_loss"] == 3
    assert (s["test/loss_at_best_val"], s["test/acc_at_best_val"]) == (0.3, 0.88)
    assert chance_accuracy(torch.tensor([0, 0, 0, 1])) == 0.75


def test_best_state_evaluates_the_best_weights_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    best = BestState()
    best.update(model, 1, 0.7)
    expected = evaluate(model, x, y)
    best.update(model, 2, 0.6)  # worse: not kept
    assert best.epoch == 1
    with torch.no_grad():
        model[0].weight.zero_()
    assert best.evaluate(model, x, y) == pytest.approx(expected)
    assert model[0].weight.abs().sum().item() == 0.0


def test_job_logs_acc_at_best_val(tmp_store):
    from initsweep.jobs.job import JobContext, execute

    cfg = compose(["trainer.epochs=2", f"tracking.uri={tmp_store}", "tracking.log_plots=false", "model.depth=1"])
    outcome = execute(cfg, JobContext())
    from mlflow import MlflowClient

    m = MlflowClient(tracking_uri=tmp_store).get_run(outcome.run_id).data.metrics
    for key in ("test/acc_at_best_val", "val/epochs_to_learn", "train/epochs_to_loss", "val/collapsed"):
        assert key in m
    assert m["diag/jacobian_sv_mean"] > 0 and "diag/weight_sv_max_min_ratio" in m


def test_isometry_of_orthogonal_and_scaled_linear_nets():
    torch.manual_seed(0)
    net = nn.Sequential(*(nn.Linear(6, 6, bias=False) for _ in range(3)))
    for layer in net:
        nn.init.orthogonal_(layer.weight)
    m = isometry_metrics(net, torch.randn(8, 6))
    assert m["diag/jacobian_sv_mean"] == pytest.approx(1.0) and m["diag/jacobian_sv_std"] < 1e-5
    assert m["diag/jacobian_sv_max_min_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert m["diag/weight_sv_max_min_ratio"] == pytest.approx(1.0)
    with torch.no_grad():
        for layer in net:
            layer.weight.mul_(2)
    m = isometry_metrics(net, torch.randn(8, 6))
    assert m["diag/jacobian_sv_mean"] == pytest.approx(8.0) and m["diag/jacobian_sq_norm"] == pytest.approx(64.0)
    assert m["diag/weight_sv_mean"] == pytest.approx(2.0)


def test_fixed_overrides_are_recognised_by_value():
    assert same_override("tracking.log_plots=false", "tracking.log_plots=False")
    assert same_override("init.std=10", "init.std=10.0") and not same_override("init.std=10", "init.std=1")
    assert not same_override("init.std=10", "+init.std=10")
    assert varying(["init=zeros", "tracking.log_plots=False"], ["tracking.log_plots=false"]) == ("init=zeros",)
    name = run_name(("init=lsuv", "tracking.log_plots=False", "seed=0"), "lsuv", 0, ("tracking.log_plots=false",))
    assert name == "init=lsuv seed=0"


def test_a_deep_conv_net_builds_initializes_and_runs():
    from initsweep.core.initializers import initialize

    cfg = _config(["model=cnn", "model.depth=30", "model.channels=[8]", "init=kaiming_normal"])
    model = build_model(cfg.model, (1, 8, 8), 10)
    initialize(model, cfg.init, cfg.model.activation)
    assert sum(1 for m in model.modules() if isinstance(m, nn.Conv2d)) == 30
    out = model(torch.randn(4, 1, 8, 8))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_isometry_of_an_overflowing_net_is_nan_not_an_error():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.fill_(1e30)
        net[1].weight.fill_(1e30)
    m = isometry_metrics(net, torch.ones(3, 4))
    # rank-1 weights: singular values 4e30, 0, 0, 0 and sqrt(8)e30, 0 -> means 1e30 and sqrt(2)e30
    assert math.isnan(m["diag/jacobian_sv_mean"]) and m["diag/weight_sv_mean"] == pytest.approx(
        (1 + math.sqrt(2)) / 2 * 1e30
    )


def test_divergence_sees_the_worst_of_the_full_pass_and_the_running_loss():
    e = EpochMetrics(1, 2.0, 0.1, 2.0, 0.1, 0.1, train_loss_running=5e4)
    assert e.worst_train_loss == 5e4
    assert math.isnan(EpochMetrics(1, math.nan, 0.1, 2.0, 0.1, 0.1, train_loss_running=1.0).worst_train_loss)
