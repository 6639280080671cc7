"""ONNX export of a network or a single block, and an onnxruntime parity check."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from supernet.io import atomic_write_bytes

OPSET = 17


def onnx_bytes(module: nn.Module, input_shape: tuple[int, ...], opset: int = OPSET) -> bytes:
    """Serialise ``module`` in eval mode with a fixed input shape (the shape latency is measured at)."""
    module = module.eval()
    x = torch.zeros(input_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter needs no onnxscript and gives the plain, stable graphs that
        # mobile runtimes import; torch labels it legacy, hence the silenced warning.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=opset, input_names=["input"], output_names=["output"])
    return buf.getvalue()


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: str | Path, opset: int = OPSET) -> Path:
    atomic_write_bytes(path, onnx_bytes(module, input_shape, opset))
    return Path(path)


def onnx_parity(module: nn.Module, model: bytes | str | Path, input_shape: tuple[int, ...], seed: int = 0) -> float:
    """Largest absolute difference between torch and onnxruntime outputs on a random input."""
    import onnxruntime as ort

    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = module.eval()(x).numpy()
    src = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    return float(np.abs(got - expected).max())
