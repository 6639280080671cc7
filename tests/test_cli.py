"""The command line as a user runs it: output, JSON, exit codes, one-line errors."""

import json
import subprocess
import sys

import pytest

from moga.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moga", *args], capture_output=True, text=True, timeout=300)


def test_arch_show_json(capsys):
    assert main(["arch", "show", "moga_a", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 5_159_802 and info["arch"].startswith("k5e6-k7e6")
    assert abs(info["macs"] - 304.0e6) < 0.1e6


def test_arch_show_table(capsys):
    assert main(["arch", "show", "fairnas_a"]) == 0
    out = capsys.readouterr().out
    assert "layer19" in out and "4,651,352" in out
    assert "(as k" not in out  # at 224 every kernel is built as chosen
    assert main(["arch", "show", "-".join(["k7e6se"] * 14), "--resolution", "32", "--num-classes", "10"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("layer")}
    assert "(as k" not in rows["layer6"] and "k7e6se (as k3)" in rows["layer7"] and "k7e6se (as k1)" in rows["layer14"]


def test_arch_sample_is_seeded(capsys):
    main(["arch", "sample", "--space", "fairnas", "-n", "4", "--seed", "3"])
    first = capsys.readouterr().out
    main(["arch", "sample", "--space", "fairnas", "-n", "4", "--seed", "3"])
    assert capsys.readouterr().out == first and len(first.split()) == 4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["arch", "show", "k3e6-k3e6"], "has 2 tokens"),
        # each case is a fresh `python -m moga` process (~2 s of imports): the first runs by default, the rest with slow
        *(
            pytest.param(args, needle, marks=pytest.mark.slow)
            for args, needle in [
                (["arch", "show", "moga_z"], "unknown zoo model 'moga_z' (did you mean 'moga_c'?)"),
                (["arch", "show", "moga_a", "--space", "fairnas"], "belongs to space 'moga'"),
                (["arch", "show", "moga_a", "--space", "nospace"], "unknown search space"),
                (["search"], "required: experiment"),  # the optional overrides are not called required
                (["retrain"], "required: experiment"),
            ]
        ),
    ],
)
def test_user_errors_are_one_line(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr and "overrides" not in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_export_onnx(tmp_path):
    out = tmp_path / "m.onnx"
    proc = run_cli("export", "moga_c", "--onnx", str(out), "--resolution", "32", "--num-classes", "10", "--variant", "cifar")
    assert proc.returncode == 0, proc.stderr
    import onnx

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert "max |diff|" in proc.stdout
