"""Latency lookup tables: per-block timings of a search space on one device, calibrated on whole networks.

``LatencyTable.load(path).predict(arch)`` predicts one architecture; ``table.predictor(space).predict_genomes``
predicts a population; ``build_table`` measures a space (onnxruntime or a fake backend), ``import_csv`` reads
timings measured on another device, ``validate`` calibrates and scores a table against whole networks.
"""

from lut.build import build_table, export_blocks, import_csv
from lut.measure import FakeBackend, MeasureProtocol, OrtBackend, make_backend
from lut.table import Calibration, Entry, LatencyTable, Predictor, space_blocks
from lut.validate import kendall_tau, validate

__all__ = [
    "Calibration",
    "Entry",
    "FakeBackend",
    "LatencyTable",
    "MeasureProtocol",
    "OrtBackend",
    "Predictor",
    "build_table",
    "export_blocks",
    "import_csv",
    "kendall_tau",
    "make_backend",
    "space_blocks",
    "validate",
]
