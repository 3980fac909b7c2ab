"""The ``genlab`` command line: help, subcommands, and ``genlab doctor``."""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlab import cli, doctor

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["doctor", "lab", "bench", "check", "grade", "example-class", "release", "validate",
            "build", "seeds"]


def _run(argv):
    """main(argv) in-process: (return code or SystemExit code)."""
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return exit_.code


# --------------------------------------------------------------------------------------------
# help
# --------------------------------------------------------------------------------------------

def test_python_m_genlab_help_lists_commands():
    env = {**os.environ, "GENLAB_FAST": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-m", "genlab", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: genlab")
    for command in COMMANDS:
        assert re.search(rf"^    {re.escape(command)}\s", result.stdout, re.M), \
            f"--help does not list {command}"


def test_help_in_process(capsys):
    assert _run(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert re.search(rf"^    {re.escape(command)}\s", out, re.M), f"--help does not list {command}"


def test_parser_has_exactly_the_commands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help(command, capsys):
    assert _run([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: genlab {command}")


def test_no_command_prints_help_and_returns_2(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "usage: genlab" in out
    for command in COMMANDS:
        assert command in out


def test_unknown_command_is_an_error(capsys):
    assert _run(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_check_needs_a_notebook(capsys):
    assert _run(["check"]) == 2
    assert "notebook" in capsys.readouterr().err


def test_main_returns_the_command_status(monkeypatch):
    monkeypatch.setattr(doctor, "main", lambda args: 7)
    assert cli.main(["doctor"]) == 7
    monkeypatch.setattr(doctor, "main", lambda args: None)
    assert cli.main(["doctor"]) == 0


# --------------------------------------------------------------------------------------------
# doctor
# --------------------------------------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Make any download attempt fail loudly."""
    import torchvision.datasets

    calls = []

    def forbidden(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("genlab doctor must not construct a torchvision data set")

    for name in ("MNIST", "FashionMNIST", "CIFAR10"):
        monkeypatch.setattr(torchvision.datasets, name, forbidden)

    def no_connect(*args, **kwargs):
        calls.append(("connect", args))
        raise AssertionError("genlab doctor must not open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket, "create_connection", no_connect)
    return calls


def _doctor(capsys):
    code = cli.main(["doctor"])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("offline", ["1", "0"])
def test_doctor_report(no_network, monkeypatch, capsys, offline, tmp_path):
    monkeypatch.setenv("GENLAB_OFFLINE", offline)  # even online, doctor only looks
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "data"))
    code, out = _doctor(capsys)
    assert code == 0, out
    assert no_network == []
    assert out.startswith("genlab doctor")
    lines = out.splitlines()

    def line_of(label):
        found = [line for line in lines if line.strip().startswith(label + " ")]
        assert found, f"doctor prints no {label!r} line:\n{out}"
        return found[0]

    assert torch.__version__.split("+")[0] in line_of("torch")  # metadata drops "+cu130"
    assert "device" in out
    device_line = line_of("device")
    if not torch.cuda.is_available():
        assert "cpu" in device_line
    assert "ON" in line_of("fast mode")  # conftest sets GENLAB_FAST=1
    for name in ("mnist", "fashion_mnist", "cifar10"):
        line_of(f"data: {name}")
    assert str(tmp_path / "data") in line_of("data dir")
    assert ("yes" if offline == "1" else "no") in line_of("offline")
    assert not (tmp_path / "data").exists(), "doctor created the data directory"


def test_doctor_fast_mode_off(no_network, monkeypatch, capsys):
    monkeypatch.setenv("GENLAB_FAST", "0")
    code, out = _doctor(capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if "fast mode" in line)
    assert "off" in line and "ON" not in line


def test_doctor_reports_missing_package(no_network, monkeypatch, capsys):
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda p: "MISSING" if p == "nbval" else real(p))
    code, out = _doctor(capsys)
    assert code == 1
    nbval_line = next(line for line in out.splitlines() if line.strip().startswith("nbval "))
    assert "MISSING" in nbval_line
    assert "missing packages: nbval" in out
    assert "torch" not in out.split("missing packages:")[1].splitlines()[0]


def test_doctor_version_of_absent_package():
    assert doctor._version("surely-not-an-installed-package-xyz") == "MISSING"
    assert doctor._version("torch") == torch.__version__.split("+")[0]


def test_seeds_refuses_an_unknown_lab_and_negative_seeds():
    assert "unknown lab '99_nothing'" in _run(["seeds", "99_nothing"])
    assert "non-negative" in _run(["seeds", "06_beta_vae", "--seeds", "-1"])
