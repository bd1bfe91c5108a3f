"""Every config group option composes and validates; bad values fail with a message naming the key."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import CONF, compose
from initsweep.core.config import ConfigError, validate

GROUPS = ("model", "data", "init", "trainer", "tracking")


def _validated(overrides):
    """The config after every check a command line gets before anything runs (schema, data, model)."""
    from initsweep.jobs.resources import check_buildable

    config = validate(OmegaConf.to_container(compose(overrides), resolve=True))
    check_buildable(config)
    return config


@pytest.mark.parametrize(
    "group,option",
    [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml")) if not p.stem.startswith("_")],
)
def test_every_group_option_composes_and_validates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if group == "init" and option == "custom":
        overrides.append("init._target_=torch.nn.init.orthogonal_")
    if group == "data" and option in ("idx", "cifar10", "imagefolder"):  # the user's files: without them, an error
        with pytest.raises(ConfigError, match="data.path"):
            _validated(overrides)
        from conftest import write_cifar_dir
        from test_data_models import _write_idx_dir
        from test_data_sources import write_image_folder

        write = {"idx": _write_idx_dir, "cifar10": write_cifar_dir, "imagefolder": write_image_folder}[option]
        overrides.append(f"data.path={write(tmp_path / option)}")
    config = _validated(overrides)
    assert getattr(config, group) is not None


def test_defaults_are_the_documented_experiment():
    config = _validated([])
    assert (config.model.name, config.model.depth, config.model.width, config.model.activation) == (
        "mlp",
        2,
        256,
        "relu",
    )
    assert config.data.name == "digits"
    assert config.init.name == "normal" and config.init.params == {"mean": 0.0, "std": 1.0}
    assert config.init.bias == "zeros"
    assert config.optimized_metric == "val/acc_best"


@pytest.mark.parametrize(
    "override,key,hint",
    [
        ("init.std=-1", "init.std", "greater than or equal to 0"),
        ("model.depth=-1", "model.depth", "greater than or equal to 0"),
        ("model.width=0", "model.width", "greater than or equal to 1"),
        ("trainer.lr=0", "trainer.lr", "greater than 0"),
        ("trainer.batch_size=0", "trainer.batch_size", "greater than or equal to 1"),
        ("model.activation=swish", "model.activation", "'relu'"),
        ("trainer.optimizer=lbfgs", "trainer.optimizer", "'sgd'"),
        ("optimized_metric=val/f1", "optimized_metric", "val/acc_best"),
        ("+model.dropout=0.5", "model.dropout", "unknown key"),
        ("seed=99999999999999999999999", "seed", "less than or equal to 4294967295"),
        ("seed=-1", "seed", "greater than or equal to 0"),
        ("data.split_seed=4294967296", "data.split_seed", "less than or equal to 4294967295"),
        ("trainer.threads=100000", "trainer.threads", "at most this machine's CPU count"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, key, hint):
    overrides = [override] if not override.startswith("init.std") else ["init=normal", override]
    with pytest.raises(ConfigError) as err:
        _validated(overrides)
    message = str(err.value)
    assert key in message and hint in message


def test_uniform_low_above_high_is_rejected():
    with pytest.raises(ConfigError, match=r"init.*low.*high"):
        _validated(["init=uniform", "init.low=1", "init.high=0"])


def test_unknown_init_parameter_lists_the_schemes_parameters():
    with pytest.raises(ConfigError, match=r"init.sigma.*mean, std"):
        _validated(["init=normal", "+init.sigma=1"])
