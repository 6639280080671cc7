from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def cifar_space():
    from supernet import get_space

    return get_space("moga", num_classes=10, resolution=32, variant="cifar")


@pytest.fixture(scope="session")
def tiny_space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests.tiny_experiment.TINY_SPACE`` as a YAML file, written once per session (read it, never write it)."""
    from tests.tiny_experiment import TINY_SPACE

    path = tmp_path_factory.mktemp("spaces") / "tiny_space.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="session")
def finished_tiny(tmp_path_factory):
    """(root, run): one finished tiny ``moga run`` (latency table, supernet, search) per test session, shared by
    the bad-input catalogues; each case works on its own copy."""
    from moga.cli import main
    from tests.tiny_experiment import write_experiment

    root = tmp_path_factory.mktemp("badinput")
    run = root / "finished"
    assert main(["run", str(write_experiment(root, run, "finished.yaml")), "--no-progress"]) == 0
    return root, run
