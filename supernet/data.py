"""Datasets and fast, deterministic in-memory loaders for supernet training.

API
---
``load_dataset(kind="embedded", path=None, resolution=32, search_val_per_class=None, seed=0, *, normalization="auto",
max_cached_images=200_000, num_workers=2) -> Dataset``.  ``kind``: ``"embedded"`` (bundled 10-class CIFAR-10 subset
``assets/cifar10-mini.tar.gz``, decoded straight from the tarball), ``"imagefolder"`` (``path/{train,val}/<class>/*``)
or ``"cifar10"`` (the official python pickle directory ``cifar-10-batches-py``).
``Dataset`` (frozen): ``train``/``search_val``/``test`` (``Split``: ``images`` uint8 N×3×S×S tensor or ``FileImages``
streamed from disk, ``labels`` int64), ``classes``, ``mean``, ``std``, ``resolution``, ``augment``;
``.loader(split, batch_size, train=None, seed=0, rank=0, world_size=1, drop_last=None, channels_last=False,
augment="standard", device=None)`` ("flip": eval view + random flip, "none": eval view),
``.calibration_indices(n, seed=0)``, ``.calibration_batch(n, seed=0, channels_last=False)`` (n train images drawn
uniformly at random with a fixed seed, eval preprocessing, normalised float32: for BN recalibration).
``TensorLoader(images, labels, batch_size, train, seed, resolution, mean, std, drop_last=None, rank=0, world_size=1,
*, augment=None, channels_last=False, num_workers=0, device=None)``: iterating yields one epoch of ``(x float32, y int64)``
on ``device`` (cached images are copied there once if they fit, streamed ones arrive over pinned memory, and
augmentation runs there: its parameters are drawn on the CPU, so a batch is the same on every device);
``len``, ``set_epoch``, ``state_dict``/``load_state_dict`` (resume mid-epoch), ``batches(start_step)`` (infinite).
``DataError`` (a ``UserError``/``ValueError``, from ``supernet.sources``, which reads the three formats): missing/empty
directory, class mismatch, unreadable image.

Splits: ``test`` = ``val/`` (or ``test_batch``); ``search_val`` = seeded class-stratified hold-out of
``search_val_per_class`` train images per class (default 100 embedded, 500 cifar10, 50 imagefolder); ``train`` = rest.
Preprocessing: ``resolution <= 64`` -> "cifar": cached at ``resolution``, train = pad-4 random crop + flip.  Otherwise
"imagenet": cached at ``round(resolution / 0.875)`` (shorter-side resize + center crop), train = random-resized-crop
(scale 0.08-1, ratio 3/4-4/3) + flip in one batched ``grid_sample``, eval = center crop.  Splits with more than
``max_cached_images`` images are streamed from disk by a DataLoader with ``num_workers``.
Determinism: ``batch_size`` is the *global* batch.  The epoch order comes from (seed, epoch); augmentation parameters
for the whole global batch come from (seed, epoch, step) and are then sliced, so rank r of W gets exactly rows
``[r*B//W, (r+1)*B//W)`` of the single-process batch.  Only explicit ``torch.Generator`` objects are used.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from supernet.sources import DataError, FileImages, decode_files, read_cifar10, read_embedded, resize_images, scan_folder

EMBEDDED_PATH = Path(__file__).parent / "assets" / "cifar10-mini.tar.gz"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_SEARCH_VAL = {"embedded": 100, "cifar10": 500, "imagefolder": 50}
SPLITS = ("train", "search_val", "test")


def _generator(*key: object) -> torch.Generator:
    """A torch.Generator seeded by a stable hash of ``key`` (independent of global RNG)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _holdout(labels: Tensor, per_class: int, classes: list[str], seed: int) -> tuple[Tensor, Tensor]:
    """Seeded class-stratified hold-out: returns (kept indices, held-out indices), both sorted."""
    g, held = _generator(seed, "search_val"), []
    for c, name in enumerate(classes):
        idx = (labels == c).nonzero().flatten()
        if len(idx) <= per_class:
            raise DataError(f"class {name!r} has {len(idx)} training images; cannot hold out {per_class}")
        held.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    held_idx = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held_idx] = False
    return keep.nonzero().flatten(), held_idx


def _normalize(x: Tensor, mean: Sequence[float], std: Sequence[float], channels_last: bool) -> Tensor:
    """uint8 (or 0-255 float) -> normalised float32, in the requested memory format, on ``x``'s device."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt).float()
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=x.device).view(1, 3, 1, 1)
    bias = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], device=x.device).view(1, 3, 1, 1)
    return x.mul_(scale).add_(bias)


def _eval_crop(x: Tensor, resolution: int) -> Tensor:
    size = x.shape[-1]
    if size < resolution:
        return F.interpolate(x.float(), (resolution, resolution), mode="bilinear", antialias=False)
    o = (size - resolution) // 2
    return x[:, :, o : o + resolution, o : o + resolution]


# Augmentation = parameters drawn on the CPU from the batch's own generator (tiny: a few numbers per image),
# applied by batched tensor ops on the images' device. A batch is therefore the same on CPU and GPU, and the
# images never leave the GPU when they live there.
def crop_flip_params(g: torch.Generator, n: int, lo: int, b: int, padded: int, resolution: int) -> tuple[Tensor, Tensor, Tensor]:
    """Offsets (top, left) into the padded image and flip flags, drawn for ``n`` global rows, rows ``lo:lo+b``."""
    oy, ox = torch.randint(0, padded - resolution + 1, (2, n), generator=g)[:, lo : lo + b]
    flip = (torch.rand(n, generator=g) < 0.5)[lo : lo + b]
    return oy, ox, flip


def crop_flip(x: Tensor, oy: Tensor, ox: Tensor, flip: Tensor, resolution: int, pad: int = 4) -> Tensor:
    """Batched random crop + horizontal flip, one gather on ``x``'s device: image i is zero-padded by ``pad``,
    cropped to ``resolution``² at (``oy[i]``, ``ox[i]``) and mirrored if ``flip[i]``; dtype is kept."""
    b, c, size = len(x), x.shape[1], x.shape[-1] + 2 * pad
    oy, ox, flip = oy.to(x.device), ox.to(x.device), flip.to(x.device)
    ar = torch.arange(resolution, device=x.device)
    rows = oy[:, None] + ar
    cols = torch.where(flip[:, None], ox[:, None] + resolution - 1 - ar, ox[:, None] + ar)
    pixel = (rows[:, :, None] * size + cols[:, None, :])[:, None]  # B×1×R×R offsets inside one plane
    plane = (torch.arange(b, device=x.device)[:, None] * c + torch.arange(c, device=x.device)) * (size * size)  # B×C plane starts
    return F.pad(x.contiguous(), (pad, pad, pad, pad)).reshape(-1)[pixel + plane[:, :, None, None]]


def _crop_flip(x: Tensor, g: torch.Generator, n: int, lo: int, resolution: int, pad: int = 4) -> Tensor:
    """Random crop (zero padding ``pad``) + horizontal flip, params for ``n`` global rows, slice ``lo:``."""
    return crop_flip(x, *crop_flip_params(g, n, lo, len(x), x.shape[-1] + 2 * pad, resolution), resolution, pad)


def _resized_crop_flip(x: Tensor, g: torch.Generator, n: int, lo: int, resolution: int) -> Tensor:
    """Random-resized-crop (scale 0.08-1, ratio 3/4-4/3, 10 tries, else full image) + flip."""
    size, tries = x.shape[-1], 10
    area = size * size * torch.empty(n, tries).uniform_(0.08, 1.0, generator=g)
    ratio = torch.exp(torch.empty(n, tries).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g))
    w, h = torch.sqrt(area * ratio).round(), torch.sqrt(area / ratio).round()
    ok = (w <= size) & (h <= size)
    first = torch.where(ok.any(1), ok.float().argmax(1), -1)
    pick = first.clamp(min=0)[:, None]
    w = torch.where(first >= 0, w.gather(1, pick)[:, 0], float(size))
    h = torch.where(first >= 0, h.gather(1, pick)[:, 0], float(size))
    x0 = torch.floor(torch.rand(n, generator=g) * (size - w + 1))
    y0 = torch.floor(torch.rand(n, generator=g) * (size - h + 1))
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    sl = slice(lo, lo + len(x))
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0] = (w / size * flip)[sl]
    theta[:, 0, 2] = ((2 * x0 + w) / size - 1)[sl]
    theta[:, 1, 1] = (h / size)[sl]
    theta[:, 1, 2] = ((2 * y0 + h) / size - 1)[sl]
    grid = F.affine_grid(theta.to(x.device), [len(x), 3, resolution, resolution], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


# A cached split is copied to the GPU once if it takes at most this share of the GPU's memory (CIFAR-10:
# 150 MB); a larger one stays in host memory and each batch goes over pinned memory, non-blocking.
DEVICE_CACHE_FRACTION = 0.25


def device_cache_fits(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` of images may live on ``device`` (always on CPU)."""
    if device.type != "cuda":
        return True
    return nbytes <= DEVICE_CACHE_FRACTION * torch.cuda.get_device_properties(device).total_memory


# "cifar": pad-4 random crop + flip; "imagenet": random-resized crop + flip; "flip": the eval view, flipped at
# random (short runs learn faster without crops); "none": the eval view
AUGMENTS = ("cifar", "imagenet", "flip", "none")


class TensorLoader:
    """Deterministic, resumable, rank-sharded batch iterator over uint8 images (see module doc)."""

    def __init__(
        self, images: Tensor | FileImages, labels: Tensor, batch_size: int, train: bool, seed: int, resolution: int,
        mean: Sequence[float], std: Sequence[float], drop_last: bool | None = None, rank: int = 0, world_size: int = 1,
        *, augment: str | None = None, channels_last: bool = False, num_workers: int = 0,
        device: torch.device | str | None = None,
    ) -> None:  # fmt: skip
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size <= 0 or batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size % world_size == 0 and 0 <= rank < world_size, got {batch_size=}")
        self.images, self.labels, self.batch_size, self.train = images, labels, batch_size, train
        self.seed, self.resolution, self.mean, self.std = seed, resolution, tuple(mean), tuple(std)
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.augment = augment or ("cifar" if resolution <= 64 else "imagenet")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        self.num_workers, self.epoch, self.position = num_workers, 0, 0
        # ``device``: batches come out there. Cached images are moved once (if they fit), augmented there.
        self.device = torch.device(device) if device is not None else None
        if self.device is not None and isinstance(images, Tensor) and device_cache_fits(images.nbytes, self.device):
            self.images, self.labels = images.to(self.device), labels.to(self.device)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a no-op if already there (so a resumed mid-epoch position is kept)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if (state["seed"], state["batch_size"]) != (self.seed, self.batch_size):
            raise ValueError(f"state is for seed/batch_size {state['seed']}/{state['batch_size']}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def _shard(self, n: int) -> tuple[int, int]:
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    def transform(self, x: Tensor, epoch: int, step: int, global_n: int, lo: int) -> Tensor:
        """uint8 rows ``lo:lo+len(x)`` of global batch ``step`` -> normalised float32."""
        if not self.train or self.augment == "none":
            x = _eval_crop(x, self.resolution)
        elif self.augment == "flip":  # the eval view, mirrored at random
            x = _crop_flip(_eval_crop(x, self.resolution), _generator(self.seed, "aug", epoch, step), global_n, lo, self.resolution, pad=0)
        elif self.augment == "cifar":
            x = _crop_flip(x, _generator(self.seed, "aug", epoch, step), global_n, lo, self.resolution)
        else:
            x = _resized_crop_flip(x, _generator(self.seed, "aug", epoch, step), global_n, lo, self.resolution)
        return _normalize(x, self.mean, self.std, self.channels_last)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, start, b = self.epoch, self.position, self.batch_size
        n = len(self.labels)
        order = torch.randperm(n, generator=_generator(self.seed, "perm", epoch)) if self.train else torch.arange(n)
        shards = []  # (step, global batch size, first global row of this rank, this rank's sample indices)
        for s in range(start, len(self)):
            batch = order[s * b : (s + 1) * b]
            lo, hi = self._shard(len(batch))
            shards.append((s, len(batch), lo, batch[lo:hi]))
        if isinstance(self.images, Tensor):
            raw: Iterable[Tensor] = (self.images[idx.to(self.images.device)] for *_, idx in shards)
        else:
            raw = DataLoader(
                self.images,
                batch_sampler=[idx.tolist() for *_, idx in shards],
                num_workers=self.num_workers,
                collate_fn=self.images.collate,
                pin_memory=self._pinned,
            )
        for (step, global_n, lo, idx), x in zip(shards, raw, strict=True):
            out = self.transform(self._to_device(x), epoch, step, global_n, lo), self._to_device(self.labels[idx.to(self.labels.device)])
            self.position = step + 1
            yield out
        self.epoch, self.position = epoch + 1, 0

    @property
    def _pinned(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def _to_device(self, t: Tensor) -> Tensor:
        """A host batch to ``device`` (non-blocking from pinned memory); a no-op when it is there already."""
        if self.device is None or t.device.type == self.device.type:  # "cuda" and "cuda:0" alike
            return t
        if self._pinned and not t.is_pinned():
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def batches(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Infinite stream of batches starting at global step ``start_step`` (epoch = step // len)."""
        if len(self) == 0:
            raise ValueError("loader has no batches (dataset smaller than batch_size with drop_last)")
        self.epoch, self.position = divmod(start_step, len(self))
        while True:
            yield from self


@dataclass(frozen=True, eq=False)
class Split:
    images: Tensor | FileImages  # uint8 N×3×S×S (cached) or FileImages (streamed)
    labels: Tensor  # int64 N

    def __len__(self) -> int:
        return len(self.labels)

    def fetch(self, idx: Tensor) -> Tensor:
        return self.images[idx] if isinstance(self.images, Tensor) else self.images.collate([self.images[i] for i in idx.tolist()])


@dataclass(frozen=True, eq=False)
class Dataset:
    train: Split
    search_val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resolution: int
    augment: str  # "cifar" or "imagenet"
    num_workers: int = 0

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def loader(
        self, split: str, batch_size: int, train: bool | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
        drop_last: bool | None = None, channels_last: bool = False, augment: str = "standard",
        device: torch.device | str | None = None,
    ) -> TensorLoader:  # fmt: skip
        """Loader over ``split``; ``train`` (shuffle + augment) defaults to ``split == "train"``.

        ``augment``: "standard" (the dataset's: crop + flip at <= 64 px, random-resized crop + flip above),
        "flip" or "none". ``device``: where batches are made (cached images are moved there once and
        augmented there; see ``TensorLoader``).
        """
        s = self.split(split)
        return TensorLoader(
            s.images, s.labels, batch_size, split == "train" if train is None else train, seed,
            self.resolution, self.mean, self.std, drop_last, rank, world_size,
            augment=self.augment if augment == "standard" else augment, channels_last=channels_last,
            num_workers=self.num_workers, device=device,
        )  # fmt: skip

    def calibration_indices(self, n: int, seed: int = 0) -> Tensor:
        """n train indices drawn uniformly at random (without replacement) with a fixed seed."""
        if not 0 < n <= len(self.train):
            raise ValueError(f"need 0 < n <= {len(self.train)} training images, got {n}")
        return torch.randperm(len(self.train), generator=_generator(seed, "calibration"))[:n]

    def calibration_batch(self, n: int, seed: int = 0, channels_last: bool = False) -> Tensor:
        """n random train images, eval preprocessing (no augmentation), normalised float32."""
        x = _eval_crop(self.train.fetch(self.calibration_indices(n, seed)), self.resolution)
        return _normalize(x, self.mean, self.std, channels_last)


def load_dataset(
    kind: str = "embedded", path: str | Path | None = None, resolution: int = 32, search_val_per_class: int | None = None,
    seed: int = 0, *, normalization: str | tuple[Sequence[float], Sequence[float]] = "auto",
    max_cached_images: int = 200_000, num_workers: int = 2,
) -> Dataset:  # fmt: skip
    """Load ``kind`` ("embedded", "imagefolder", "cifar10") into train/search_val/test splits."""
    if kind not in DEFAULT_SEARCH_VAL:
        raise DataError(f"dataset kind must be one of {sorted(DEFAULT_SEARCH_VAL)}, got {kind!r}")
    if resolution <= 0:
        raise DataError(f"resolution must be positive, got {resolution}")
    per_class = DEFAULT_SEARCH_VAL[kind] if search_val_per_class is None else search_val_per_class
    augment = "cifar" if resolution <= 64 else "imagenet"
    size = resolution if augment == "cifar" else round(resolution / 0.875)
    if path is None and kind != "embedded":
        raise DataError(f"kind={kind!r} needs a dataset path")
    if kind == "imagefolder":
        classes, lists = scan_folder(Path(path).expanduser())  # type: ignore[arg-type]
        cached = {}
        for sub, (files, _) in lists.items():
            if len(files) <= max_cached_images:
                cached[sub] = decode_files(tuple(files), size, num_workers)
            else:
                cached[sub] = FileImages(files, size)
        train_all, test_images = cached["train"], cached["val"]
        train_labels, test_labels = lists["train"][1], lists["val"][1]
    else:
        root = str(Path(path or EMBEDDED_PATH).expanduser())
        if kind == "embedded" and not Path(root).is_file():
            raise DataError(f"embedded dataset archive not found: {root}")
        load = read_embedded if kind == "embedded" else read_cifar10
        classes, train_all, train_labels, test_images, test_labels = load(root)
        train_all, test_images = resize_images(train_all, size), resize_images(test_images, size)

    def take(images: Tensor | FileImages, idx: Tensor) -> Tensor | FileImages:
        if isinstance(images, Tensor):
            return images[idx]
        return FileImages([images.files[i] for i in idx.tolist()], images.size)

    keep, held = _holdout(train_labels, per_class, classes, seed)
    if normalization == "auto":
        normalization = "imagenet" if kind == "imagefolder" else "cifar"
    if isinstance(normalization, str):
        stats = {"cifar": (CIFAR_MEAN, CIFAR_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}
        if normalization not in stats:
            raise DataError(f"normalization must be 'auto', 'cifar', 'imagenet' or (mean, std), got {normalization!r}")
        normalization = stats[normalization]
    mean, std = (tuple(float(v) for v in t) for t in normalization)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DataError(f"normalization needs 3 means and 3 positive stds, got {mean} / {std}")
    train, search_val = Split(take(train_all, keep), train_labels[keep]), Split(take(train_all, held), train_labels[held])
    test = Split(take(test_images, torch.arange(len(test_labels))), test_labels.clone())  # copies: never alias the cache
    return Dataset(train, search_val, test, list(classes), mean, std, resolution, augment, num_workers)  # type: ignore[arg-type]
