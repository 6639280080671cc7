import pytest
import torch
import torch.nn.functional as F

from supernet.depthwise import DepthwiseConv2d


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_same_outputs_and_gradients_as_a_plain_depthwise_conv(size: int, kernel: int, stride: int, channels_last: bool) -> None:
    torch.manual_seed(size * 100 + kernel * 10 + stride)
    conv = DepthwiseConv2d(6, kernel, stride)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 6, size, size + 1).contiguous(memory_format=fmt).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    weight_ref = conv.weight.detach().clone().requires_grad_()
    y = conv(x)
    y_ref = F.conv2d(x_ref, weight_ref, None, stride, kernel // 2, 1, 6)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_ref)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, weight_ref.grad, rtol=1e-4, atol=1e-5)


def test_frozen_weight_and_inference_take_the_plain_path() -> None:
    conv = DepthwiseConv2d(4, 5).requires_grad_(False)
    x = torch.randn(2, 4, 2, 2, requires_grad=True)
    conv(x).sum().backward()
    assert x.grad is not None and conv.weight.grad is None
    with torch.no_grad():
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 1, 2, 1, 4))
