"""Where a dataset's images come from: the embedded CIFAR-10 tarball, the official CIFAR-10 pickles, an image
folder (``train/<class>/*``, ``val/<class>/*``), each read into uint8 N×3×S×S tensors (or ``FileImages`` streamed
from disk), with a ``DataError`` naming the file for anything unreadable. ``supernet.data`` builds the splits and
loaders from them."""

from __future__ import annotations

import functools
import io
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from supernet.errors import UserError
from supernet.readers import unpickle_plain

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"})


class DataError(UserError):
    """A problem with the user's data (missing/empty directory, class mismatch, bad image)."""


def decode_image(source: str | Path | bytes, name: str, size: int) -> np.ndarray:
    """Decode one image to RGB uint8 H×W×3, shorter side resized to ``size`` + center crop."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            img = img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {name}: {e}") from e
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.array(img, dtype=np.uint8)


def resize_images(images: Tensor, size: int, chunk: int = 1024) -> Tensor:
    """Resize a uint8 N×3×H×W batch (shorter side -> size, then center crop) in chunks."""
    n, _, h, w = images.shape
    if (h, w) == (size, size):
        return images
    nh, nw = max(size, round(h * size / min(h, w))), max(size, round(w * size / min(h, w)))
    top, left = (nh - size) // 2, (nw - size) // 2
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in range(0, n, chunk):
        x = F.interpolate(images[i : i + chunk].float(), (nh, nw), mode="bilinear", antialias=True)
        out[i : i + chunk] = x[:, :, top : top + size, left : left + size].round().clamp(0, 255)
    return out


def check_classes(train: Iterable[str], val: Iterable[str], where: object) -> list[str]:
    train_set, val_set = set(train), set(val)
    if not train_set:
        raise DataError(f"{where}: no class folders found under train/")
    if train_set != val_set:
        raise DataError(
            f"{where}: train/ and val/ class folders differ: only in train: "
            f"{sorted(train_set - val_set)}, only in val: {sorted(val_set - train_set)}"
        )
    return sorted(train_set)


class FileImages(TorchDataset):
    """Images streamed from disk, decoded to uint8 3×size×size (for DataLoader workers)."""

    def __init__(self, files: Sequence[str], size: int) -> None:
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(decode_image(self.files[i], self.files[i], self.size)).permute(2, 0, 1)

    def collate(self, items: list[Tensor]) -> Tensor:
        return torch.stack(items) if items else torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)


@functools.lru_cache(maxsize=2)
def read_embedded(path: str) -> tuple[list[str], Tensor, Tensor, Tensor, Tensor]:
    members: dict[str, dict[str, list[tuple[str, bytes]]]] = {"train": {}, "val": {}}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                parts = PurePosixPath(m.name).parts
                parts = parts[1:] if parts[:1] == (".",) else parts
                if m.isfile() and len(parts) == 3 and parts[0] in members and PurePosixPath(parts[2]).suffix.lower() in IMAGE_EXTENSIONS:
                    data = tar.extractfile(m).read()  # type: ignore[union-attr]
                    members[parts[0]].setdefault(parts[1], []).append((m.name, data))
    except (OSError, tarfile.TarError, EOFError) as e:
        raise DataError(f"cannot read dataset archive {path}: {e}") from e
    classes = check_classes(members["train"], members["val"], path)
    out: list[Tensor] = []
    for split in ("train", "val"):
        arrays, labels = [], []
        for c, cls in enumerate(classes):
            for name, data in sorted(members[split][cls]):
                arrays.append(decode_image(data, f"{path}:{name}", 32))
                labels.append(c)
        out += [torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.int64)]
    return classes, *out  # type: ignore[return-value]


def unpickle_cifar(file: Path) -> dict[Any, Any]:
    if not file.is_file():
        raise DataError(f"CIFAR-10 file missing: {file}")
    try:  # the official CIFAR-10 python release *is* a pickle: admit only the plain data it holds, never code
        obj = unpickle_plain(file)
    except UserError as e:
        raise DataError(str(e)) from None
    if not isinstance(obj, dict):
        raise DataError(f"malformed CIFAR-10 batch {file}: expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


@functools.lru_cache(maxsize=2)
def read_cifar10(path: str) -> tuple[list[str], Tensor, Tensor, Tensor, Tensor]:
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"dataset directory does not exist: {root}")
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    out: list[Tensor] = []
    for names in ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]):
        batches = [unpickle_cifar(root / n) for n in names]
        try:
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
            labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(f"malformed CIFAR-10 batch in {root}: {e!r}") from None
        out += [torch.from_numpy(data), torch.from_numpy(labels)]
    meta = root / "batches.meta"
    try:
        classes = [n.decode() for n in unpickle_cifar(meta)["label_names"]] if meta.is_file() else list(CIFAR10_CLASSES)
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise DataError(f"malformed CIFAR-10 metadata {meta}: {e!r}") from None
    return classes, *out  # type: ignore[return-value]


def scan_folder(root: Path) -> tuple[list[str], dict[str, tuple[list[str], Tensor]]]:
    if not root.is_dir():
        raise DataError(f"dataset directory does not exist: {root}")
    if not any(root.iterdir()):
        raise DataError(f"dataset directory is empty: {root}")
    found: dict[str, dict[str, list[str]]] = {}
    for sub in ("train", "val"):
        d = root / sub
        if not d.is_dir():
            raise DataError(f"{root} has no {sub}/ folder (expected {sub}/<class>/<image> layout)")
        dirs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise DataError(f"{d} is empty: no class folders")
        found[sub] = {p.name: sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS) for p in dirs}
    classes = check_classes(found["train"], found["val"], root)
    for sub, by_class in found.items():
        if empty := [c for c, files in by_class.items() if not files]:
            raise DataError(f"{root / sub}: class folders without images: {empty}")
    lists = {}
    for sub in ("train", "val"):
        files = [f for c in classes for f in found[sub][c]]
        labels = torch.tensor([i for i, c in enumerate(classes) for _ in found[sub][c]], dtype=torch.int64)
        lists[sub] = (files, labels)
    return classes, lists


@functools.lru_cache(maxsize=4)
def decode_files(files: tuple[str, ...], size: int, num_workers: int) -> Tensor:
    ds = FileImages(files, size)
    if num_workers <= 0 or len(files) < 4096:
        return ds.collate([ds[i] for i in range(len(ds))])
    loader = DataLoader(ds, batch_size=512, num_workers=num_workers, collate_fn=ds.collate)
    return torch.cat(list(loader))
