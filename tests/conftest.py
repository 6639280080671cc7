import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def cifar_space():
    from supernet import get_space

    return get_space("moga", num_classes=10, resolution=32, variant="cifar")
