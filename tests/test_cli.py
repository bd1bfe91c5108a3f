"""The command line: ``initsweep`` / ``python -m initsweep`` / the clone's ``python train.py`` are one command,
and a user's own config directory (``--config-dir``, ``hydra.searchpath``) adds config group options that the
pre-Hydra check (:mod:`initsweep.cli.precheck`) accepts, or rejects with one ``initsweep:`` line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TRAIN, train_env
from initsweep.cli.main import CONFIG_DIR
from initsweep.cli.precheck import check_command_line


def user_conf(directory: Path) -> Path:
    """A user's config dir with options the package does not have: ``model=mynet``, ``trainer=quick``."""
    conf = directory / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "trainer").mkdir()
    (conf / "model" / "mynet.yaml").write_text("defaults:\n  - mlp\nwidth: 16\n")
    (conf / "trainer" / "quick.yaml").write_text("defaults:\n  - default\nepochs: 2\n")
    return conf


def precheck_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The stderr of a precheck that must fail with exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        check_command_line(argv, CONFIG_DIR)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("initsweep: "), err
    return err.strip()


def test_package_conf_is_the_clones_conf():
    assert CONFIG_DIR.resolve() == (ROOT / "conf").resolve() and (CONFIG_DIR / "config.yaml").is_file()


def test_precheck_accepts_a_user_group_option_from_config_dir(tmp_path: Path):
    conf = user_conf(tmp_path)
    check_command_line(["--config-dir", str(conf), "model=mynet", "trainer=quick"], CONFIG_DIR)
    check_command_line(["-cd", str(conf), "-m", "model=mynet,mlp", "trainer=quick"], CONFIG_DIR)


def test_precheck_accepts_a_user_group_option_from_hydra_searchpath(tmp_path: Path):
    conf = user_conf(tmp_path)
    check_command_line([f"hydra.searchpath=[file://{conf}]", "model=mynet"], CONFIG_DIR)
    # ... and from the hydra.searchpath of a user's primary config
    (tmp_path / "primary").mkdir()
    (tmp_path / "primary" / "mine.yaml").write_text(
        f"defaults:\n  - config\n  - _self_\nhydra:\n  searchpath:\n    - file://{conf}\n"
    )
    check_command_line(["-cd", str(tmp_path / "primary"), "-cn", "mine", "-m", "model=mynet,cnn"], CONFIG_DIR)


@pytest.mark.parametrize(
    "argv",
    [
        ["--config-dir", "{conf}", "model=mynett"],
        ["--config-dir", "{conf}", "-m", "model=mlp,mynett"],
        ["hydra.searchpath=[file://{conf}]", "model=mynett"],
        ["-m", "hydra.searchpath=[file://{conf}]", "model=mynett,mlp"],
    ],
)
def test_precheck_names_a_typo_in_a_user_group_option_and_lists_the_options(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    conf = user_conf(tmp_path)
    err = precheck_error([a.format(conf=conf) for a in argv], capsys)
    assert (
        err == "initsweep: model=mynett: no such option; did you mean mynet? (options: cnn, mlp, mynet, resmlp, resnet)"
    )


def test_precheck_without_the_user_dir_does_not_know_the_user_option(capsys: pytest.CaptureFixture[str]):
    assert (
        precheck_error(["model=mynet"], capsys)
        == "initsweep: model=mynet: no such option (options: cnn, mlp, resmlp, resnet)"
    )


def test_precheck_names_a_missing_config_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    err = precheck_error(["--config-dir", str(tmp_path / "nope"), "model=mlp"], capsys)
    assert err.startswith(f"initsweep: --config-dir {tmp_path / 'nope'}: no such directory")


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=train_env(), capture_output=True, text=True, timeout=120)


def test_python_m_initsweep_help_lists_the_packages_and_the_users_groups(tmp_path: Path):
    conf = user_conf(tmp_path)
    proc = run([sys.executable, "-m", "initsweep", "--config-dir", str(conf), "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("initsweep is powered by Hydra.")
    assert "model: cnn, mlp, mynet" in proc.stdout and "trainer: default, quick" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_train_py_and_python_m_initsweep_compose_the_same_config(tmp_path: Path):
    conf = user_conf(tmp_path)
    args = ["--cfg", "job", "--config-dir", str(conf), "model=mynet", "trainer=quick", "seed=3"]
    via_module = run([sys.executable, "-m", "initsweep", *args], tmp_path)
    via_train = run([sys.executable, str(TRAIN), *args], tmp_path)
    assert via_module.returncode == via_train.returncode == 0, via_module.stderr + via_train.stderr
    assert via_module.stdout == via_train.stdout
    assert "width: 16" in via_module.stdout and "epochs: 2" in via_module.stdout


def test_python_m_initsweep_config_error_is_one_line_exit_2(tmp_path: Path):
    conf = user_conf(tmp_path)
    proc = run([sys.executable, "-m", "initsweep", "-cd", str(conf), "-m", "trainer=quick,quik"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "initsweep: trainer=quik: no such option; did you mean quick? (options: default, quick)\n"
    assert not (tmp_path / "multirun").exists()


def test_a_user_option_named_like_a_built_in_one_replaces_it(tmp_path: Path):
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "resmlp.yaml").write_text("_target_: initsweep.core.models.MLP\nname: mine\nwidth: 7\n")
    proc = run([sys.executable, "-m", "initsweep", "--cfg", "job", "--config-dir", str(conf), "model=resmlp"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "_target_: initsweep.core.models.MLP" in proc.stdout and "width: 7" in proc.stdout
    assert "ResidualMLP" not in proc.stdout
    builtin = run([sys.executable, "-m", "initsweep", "--cfg", "job", "model=resmlp"], tmp_path)
    assert "_target_: initsweep.core.models.ResidualMLP" in builtin.stdout


def test_a_sweep_over_nested_group_options_is_accepted_and_a_wrong_one_named(capsys: pytest.CaptureFixture[str]):
    check_command_line(["-m", "init=variants/normal_x10,kaiming_normal"], CONFIG_DIR)  # conf/init/variants/
    err = precheck_error(["-m", "init=variants/normal_x11,zeros"], capsys)
    assert err.startswith("initsweep: init=variants/normal_x11: no such option; did you mean variants/normal_x10")
    assert "variants/orthogonal_relu" in err
