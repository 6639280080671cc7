"""A whole experiment small enough to run every stage in a second or two on a CPU, for the reliability tests.

A 3-layer space (the stride-2 layer offers no ``skip``), 4 classes of 32x32 JPEGs in an ImageFolder tree
(loading it costs milliseconds, unlike decoding the embedded CIFAR-10 subset), the fake latency backend,
and a few optimizer steps. Shared by test_kill_resume, test_bad_input and test_repeat_run; the space
(``TINY_SPACE``) is the one every test on a tiny space uses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def tiny_space_yaml(*, fc_channels: int = 0, dropout: float = 0.0) -> str:
    """The tiny space's YAML; the head may have an fc layer before the classifier, and dropout."""
    return f"""\
name: tiny
stem: {{channels: 8, kernel: 3, stride: 1, act: relu}}
separable: {{channels: 8, kernel: 3, act: relu}}
layers:
  out_channels: [8, 16, 16]
  strides: [1, 2, 1]
  acts: relu
choices:
  kernels: [3, 5]
  expansions: [2]
  se: [false, true]
  skip: true
head: {{channels: 32, act: hswish, fc_channels: {fc_channels}, dropout: {dropout}}}
"""


TINY_SPACE = tiny_space_yaml()
"""The one tiny space of the test suite (choices per layer (5, 4, 5): the stride-2 layer offers no ``skip``);
``conftest.tiny_space_file`` is it on disk."""


# The tests of quickstart.yaml itself (its 14-layer space, the embedded CIFAR-10 subset) run it at a quarter of
# the width, with a fake latency table and 10 search-validation images per class; each adds its stage settings.
QUICKSTART = Path(__file__).parents[1] / "experiments" / "quickstart.yaml"
SMALL_QUICKSTART = ["space.width_mult=0.25", "data.search_val_per_class=10", "lut.tables={cpu: {backend: fake}}"]
CLASSES = ("ant", "bee", "cat", "dog")
# Files whose content legitimately differs between two identical runs: the lock holds the owner's pid.
VOLATILE = {".lock", ".summary.lock"}


def make_image_folder(root: Path, classes: tuple[str, ...] = CLASSES, train: int = 8, val: int = 4, seed: int = 0) -> Path:
    """``root/{train,val}/<class>/<i>.jpg``: random 32x32 JPEGs."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:02d}.jpg", quality=90)
    return root


def experiment_dict(root: Path, run_dir: Path, **sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "run_dir": str(run_dir),
        "space": {"name": str(root / "tiny_space.yaml"), "resolution": 32, "num_classes": len(CLASSES), "variant": "cifar"},
        "data": {"kind": "imagefolder", "path": str(root / "data"), "search_val_per_class": 2},
        "supernet": dict(
            steps=8,
            batch_size=8,
            warmup_steps=1,
            checkpoint_every=4,
            eval_every=0,
            eval_paths=0,
            eval={"calib_images": 16, "calib_batch_size": 8, "images": 0, "batch_size": 8},
        ),
        "lut": {"tables": {"cpu": {"backend": "fake"}}},
        "search": {"population": 8, "generations": 6},
        "retrain": {"epochs": 3, "batch_size": 8, "max_steps": 8, "warmup_steps": 1, "checkpoint_every": 4},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values} if isinstance(values, dict) else values
    return cfg


def write_experiment(root: Path, run_dir: Path, name: str | Path = "exp.yaml", **sections: Any) -> Path:
    """The experiment YAML (JSON is YAML) for ``run_dir``, at ``root / name`` (or ``name`` if a path);
    the space file and the images are made once per ``root``. ``sections`` update the defaults above."""
    if not (root / "tiny_space.yaml").exists():
        (root / "tiny_space.yaml").write_text(TINY_SPACE)
    if not (root / "data").exists():
        make_image_folder(root / "data")
    path = name if isinstance(name, Path) else root / name
    path.write_text(json.dumps(experiment_dict(root, run_dir, **sections), indent=1))
    return path


def file_hashes(run_dir: Path, skip: set[str] = VOLATILE) -> dict[str, str]:
    """sha256 of every file under ``run_dir`` by relative path (lock files left out)."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def assert_intact(run_dir: Path) -> list[str]:
    """Every file of a run directory opens with the reader its kind needs; returns the files checked.

    Leftover ``.<name>.*.tmp`` files of an interrupted atomic write are not results and are skipped.
    """
    import pandas as pd
    import torch
    import yaml

    checked = []
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or path.name in VOLATILE or (path.name.startswith(".") and path.name.endswith(".tmp")):
            continue
        suffix = path.suffix
        try:
            if suffix == ".json":
                json.loads(path.read_text())
            elif suffix == ".csv":
                pd.read_csv(path)
            elif suffix == ".pt":
                torch.load(path, weights_only=True)
            elif suffix == ".png":
                with Image.open(path) as img:
                    img.verify()
            elif suffix == ".yaml":
                yaml.safe_load(path.read_text())
            elif suffix == ".onnx":
                import onnx

                onnx.checker.check_model(onnx.load(str(path)))
            elif suffix == ".html":
                assert path.read_text().rstrip().endswith("</html>")
            else:
                raise AssertionError(f"unexpected file kind {path}")
        except Exception as exc:
            raise AssertionError(f"{path} is corrupt: {type(exc).__name__}: {exc}") from None
        checked.append(str(path.relative_to(run_dir)))
    return checked
