"""A depthwise convolution that trains fast on CPUs, with exactly the same outputs and gradients.

Two facts about depthwise kxk convolutions on the small feature maps of mobile networks:

* **Kernel crop.** With padding k//2, a tap further than ``h - 1`` rows (or ``w - 1`` columns) from the
  centre only ever multiplies padding zeros, so the kernel cropped to radius ``min(k//2, h-1)`` (padding
  shrunk alike) gives the same output, and the cropped-off taps get a zero gradient either way. At 1x1
  a 5x5 kernel is one multiply per channel.
* **Weight gradient.** oneDNN's depthwise weight gradient costs up to 250x its forward pass on maps of
  4x4 and smaller (torch 2.x CPU builds; see BENCHMARKS.md). There, one strided multiply-and-sum per tap
  is 4-40x faster. oneDNN stays in charge of everything else (forward, input gradient, larger maps, GPUs).

The search space already builds each block at its cropped size (``SearchSpace.layer_shape``), so models,
counts, ONNX files and latency tables never carry dead taps; the crop here covers inputs smaller than the
resolution a network was built for. ONNX export sees a plain ``Conv`` with the built kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TAP_LOOP_MAX_PIXELS = 16
"""Output maps up to this many pixels (4x4) take the per-tap weight gradient on CPU."""


def _weight_grad_by_taps(grad: torch.Tensor, x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """d(loss)/d(weight) of a depthwise conv, one strided multiply-and-sum per kernel tap."""
    _, channels, out_h, out_w = grad.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    weight_grad = x.new_empty(channels, kernel, kernel)
    for i in range(kernel):
        for j in range(kernel):
            window = padded[:, :, i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride]
            weight_grad[:, i, j] = (grad * window).sum((0, 2, 3))
    return weight_grad.unsqueeze(1)


class _SmallMapDepthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], x.shape[1], [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_grad_by_taps(grad.contiguous(memory_format=torch.channels_last), x, weight.shape[-1], s, p)
        return grad_input, grad_weight, None, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)``, faster."""

    def __init__(self, channels: int, kernel: int, stride: int = 1):
        super().__init__(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)
        self.init_kernel = kernel  # a kernel built cropped starts as the centre of one of this size (init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        h, w = x.shape[-2:]
        r = min(k // 2, max(h, w) - 1)
        weight = self.weight if r == k // 2 else self.weight[:, :, k // 2 - r : k // 2 + r + 1, k // 2 - r : k // 2 + r + 1]
        out_pixels = ((h - 1) // s + 1) * ((w - 1) // s + 1)
        if x.device.type == "cpu" and out_pixels <= TAP_LOOP_MAX_PIXELS and torch.is_grad_enabled() and self.weight.requires_grad:
            return _SmallMapDepthwise.apply(x, weight, s, r)
        return F.conv2d(x, weight, None, s, r, 1, self.groups)
