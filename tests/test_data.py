"""Tests for supernet.data: embedded/imagefolder/cifar10 loading, splits, determinism, resume, sharding, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from supernet import data, sources
from supernet.data import DataError, Dataset, TensorLoader, load_dataset

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def embedded() -> Dataset:
    return load_dataset("embedded", resolution=32, seed=0)


def take(loader, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i, batch in enumerate(loader):
        if i == k:
            break
        out.append(batch)
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))


def row_keys(images: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in images]


def make_folder(root: Path, classes: dict[str, tuple[int, int]], size: tuple[int, int] = (40, 48)) -> Path:
    """ImageFolder tree: classes maps name -> (n_train, n_val); images are w×h = size JPEGs."""
    rng = np.random.default_rng(0)
    for cls, counts in classes.items():
        for split, n in zip(("train", "val"), counts, strict=True):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:03d}.jpg", quality=95)
    return root


def test_embedded_shapes_counts_classes(embedded: Dataset) -> None:
    assert embedded.classes == CIFAR_CLASSES
    assert embedded.train.images.shape == (9000, 3, 32, 32) and embedded.train.images.dtype == torch.uint8
    assert embedded.search_val.images.shape == (1000, 3, 32, 32)
    assert embedded.test.images.shape == (2000, 3, 32, 32)
    assert embedded.train.labels.dtype == torch.int64
    assert embedded.train.labels.bincount().tolist() == [900] * 10
    assert embedded.search_val.labels.bincount().tolist() == [100] * 10
    assert embedded.test.labels.bincount().tolist() == [200] * 10
    assert embedded.mean == data.CIFAR_MEAN and embedded.augment == "cifar"


def test_splits_disjoint_and_search_val_seeded(embedded: Dataset) -> None:
    _, full, full_labels, test_images, _ = sources.read_embedded(str(data.EMBEDDED_PATH))
    full_keys = row_keys(full)
    assert len(set(full_keys)) == len(full_keys) == 10000  # no duplicate images, so set checks are exact
    train, held = set(row_keys(embedded.train.images)), set(row_keys(embedded.search_val.images))
    assert not train & held and train | held == set(full_keys)
    assert not held & set(row_keys(test_images))
    # labels travel with their images
    label_of = dict(zip(full_keys, full_labels.tolist(), strict=True))
    assert [label_of[k] for k in row_keys(embedded.search_val.images)] == embedded.search_val.labels.tolist()
    other = load_dataset("embedded", seed=1)
    assert set(row_keys(other.search_val.images)) != held
    assert set(row_keys(load_dataset("embedded", seed=0).search_val.images)) == held


def test_same_seed_same_batches_different_seed_differs(embedded: Dataset) -> None:
    a = take(embedded.loader("train", 64, seed=3), 3)
    b = take(embedded.loader("train", 64, seed=3), 3)
    c = take(embedded.loader("train", 64, seed=4), 3)
    assert same(a, b) and not same(a, c)
    x, y = a[0]
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (64,)
    later = embedded.loader("train", 64, seed=3)
    later.set_epoch(1)
    assert not same(take(later, 3), a)


# cached at the resolution / cached larger (eval = centre crop; resizing the whole subset to 80 px takes seconds)
@pytest.mark.parametrize("resolution", [32, pytest.param(80, marks=pytest.mark.slow)])
def test_flip_and_none_augment_are_the_eval_view_mirrored_or_not(resolution: int) -> None:
    ds = load_dataset("embedded", resolution=resolution)
    (xn, yn), (xf, yf) = (take(ds.loader("train", 64, seed=3, augment=a), 1)[0] for a in ("none", "flip"))
    idx = torch.randperm(len(ds.train.labels), generator=data._generator(3, "perm", 0))[:64]  # the epoch's order
    eval_view = data._normalize(data._eval_crop(ds.train.images[idx], resolution), ds.mean, ds.std, False)
    assert torch.equal(yn, ds.train.labels[idx]) and torch.equal(yn, yf) and torch.equal(xn, eval_view)
    mirrored = torch.all(xf == xn.flip(-1), dim=(1, 2, 3))
    assert torch.all(mirrored | torch.all(xf == xn, dim=(1, 2, 3)))
    assert 10 < int(mirrored.sum()) < 54  # about half are mirrored
    with pytest.raises(ValueError, match="augment must be one of"):
        ds.loader("train", 64, augment="cutmix")


def test_global_rng_not_used(embedded: Dataset) -> None:
    torch.manual_seed(0)
    a = take(embedded.loader("train", 32, seed=0), 2)
    torch.manual_seed(123)
    torch.rand(10)
    b = take(embedded.loader("train", 32, seed=0), 2)
    assert same(a, b)


def test_epoch_covers_train_once_and_eval_is_ordered(embedded: Dataset) -> None:
    loader = embedded.loader("train", 128, seed=0)
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == 9000 // 128 and len(labels) == len(loader) * 128  # drop_last for training
    test = embedded.loader("test", 300)
    batches = list(test)
    assert len(test) == len(batches) == 7 and torch.equal(torch.cat([y for _, y in batches]), embedded.test.labels)
    x0 = batches[0][0]
    mean, std = torch.tensor(embedded.mean).view(1, 3, 1, 1), torch.tensor(embedded.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x0, (embedded.test.images[:300].float() / 255 - mean) / std)


def test_resume_mid_epoch(embedded: Dataset) -> None:
    ref = embedded.loader("train", 100, seed=7)
    ref.set_epoch(2)
    it = iter(ref)
    for _ in range(5):
        next(it)
    state = ref.state_dict()
    assert state["epoch"] == 2 and state["position"] == 5
    expected = [next(it) for _ in range(4)]
    resumed = embedded.loader("train", 100, seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a training loop calling set_epoch for the current epoch must not rewind
    assert same(take(resumed, 4), expected)


def test_infinite_batches_cross_epochs(embedded: Dataset) -> None:
    loader = embedded.loader("search_val", 300, train=True, seed=1)
    assert len(loader) == 3
    stream = loader.batches()
    all_batches = [next(stream) for _ in range(7)]
    restarted = embedded.loader("search_val", 300, train=True, seed=1).batches(start_step=4)
    assert same([next(restarted) for _ in range(3)], all_batches[4:])
    assert not torch.equal(all_batches[0][0], all_batches[3][0])  # epoch 1 differs from epoch 0


@pytest.mark.parametrize("train", [True, False])
def test_distributed_shards_concatenate_to_single_process_batch(embedded: Dataset, train: bool) -> None:
    split = "train" if train else "test"
    single = take(embedded.loader(split, 64, train=train, seed=5), 3)
    shards = [take(embedded.loader(split, 64, train=train, seed=5, rank=r, world_size=2), 3) for r in range(2)]
    for (x, y), (x0, y0), (x1, y1) in zip(single, *shards, strict=True):
        assert len(x0) == len(x1) == 32
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_distributed_random_resized_crop_and_channels_last() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 80, 80), dtype=torch.uint8, generator=gen)
    labels = torch.arange(24)
    kw = dict(train=True, seed=2, resolution=70, mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
    single = list(TensorLoader(images, labels, 12, **kw))
    assert single[0][0].shape == (12, 3, 70, 70)
    for world in (2, 3):
        shards = [list(TensorLoader(images, labels, 12, rank=r, world_size=world, channels_last=True, **kw)) for r in range(world)]
        for step, (x, y) in enumerate(single):
            parts = [s[step] for s in shards]
            assert parts[0][0].is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(torch.cat([p[0] for p in parts]), x, rtol=0, atol=1e-5)
            assert torch.equal(torch.cat([p[1] for p in parts]), y)
    eval_x = next(iter(TensorLoader(images, labels, 24, **{**kw, "train": False})))[0]
    mean, std = torch.tensor(data.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(data.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(eval_x, (images[:, :, 5:75, 5:75].float() / 255 - mean) / std)


def test_crop_flip_matches_reference() -> None:
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = data._crop_flip(x, data._generator("t"), 6, 0, 8)
    g = data._generator("t")
    oy, ox = torch.randint(0, 9, (2, 6), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        ref = padded[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)


def test_calibration_batch(embedded: Dataset) -> None:
    a = embedded.calibration_batch(20, seed=0)
    assert a.shape == (20, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, embedded.calibration_batch(20, seed=0))
    assert not torch.equal(a, embedded.calibration_batch(20, seed=1))
    idx = embedded.calibration_indices(20, seed=0)
    assert len(set(embedded.train.labels[idx].tolist())) >= 4  # drawn across classes, not the first 20 of class 0
    first = next(iter(embedded.loader("train", 20, train=False)))[0]
    assert not torch.equal(a, first)
    mean, std = torch.tensor(embedded.mean).view(1, 3, 1, 1), torch.tensor(embedded.std).view(1, 3, 1, 1)
    torch.testing.assert_close(a, (embedded.train.images[idx].float() / 255 - mean) / std)


def test_imagefolder_tiny(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds", {"zebra": (4, 2), "ant": (4, 2), "moth": (4, 2)})
    ds = load_dataset("imagefolder", root, resolution=32, search_val_per_class=1, seed=0)
    assert ds.classes == ["ant", "moth", "zebra"] and ds.mean == data.IMAGENET_MEAN
    assert ds.train.images.shape == (9, 3, 32, 32) and ds.search_val.images.shape == (3, 3, 32, 32)
    assert ds.test.images.shape == (6, 3, 32, 32) and ds.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.search_val.labels.tolist() == [0, 1, 2] and ds.train.labels.bincount().tolist() == [3, 3, 3]
    # 40×48 (w×h) image: shorter side -> 32 gives 32×38, then a center crop of rows 3..35 (PIL reference)
    img = Image.open(root / "val" / "ant" / "000.jpg").convert("RGB").resize((32, 38), Image.Resampling.BILINEAR)
    ref = torch.from_numpy(np.array(img.crop((0, 3, 32, 35)))).permute(2, 0, 1)
    assert torch.equal(ds.test.images[0], ref)
    x, y = next(iter(ds.loader("train", 4, seed=0)))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)
    # streamed from disk (split larger than max_cached_images) gives exactly the same batches
    streamed = load_dataset("imagefolder", root, resolution=32, search_val_per_class=1, seed=0, max_cached_images=5, num_workers=1)
    assert all(isinstance(streamed.split(s).images, data.FileImages) for s in data.SPLITS)
    for split, train in (("train", True), ("test", False)):
        assert same(list(ds.loader(split, 4, train=train, seed=1)), list(streamed.loader(split, 4, train=train, seed=1)))
    assert torch.equal(streamed.calibration_batch(5, seed=2), ds.calibration_batch(5, seed=2))


def test_imagefolder_large_resolution(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds", {"a": (3, 1), "b": (3, 1)}, size=(90, 100))
    ds = load_dataset("imagefolder", root, resolution=70, search_val_per_class=1)
    assert ds.augment == "imagenet" and ds.train.images.shape == (4, 3, 80, 80)  # cached at 70 / 0.875
    assert next(iter(ds.loader("train", 2)))[0].shape == (2, 3, 70, 70)
    assert next(iter(ds.loader("test", 2)))[0].shape == (2, 3, 70, 70)


def write_cifar(root: Path, per_batch: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Tiny cifar-10-batches-py directory in the official pickle format (bytes keys, N×3072 uint8 rows)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_data, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": rows, b"filenames": [b"x.png"] * per_batch}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        all_data.append(rows)
        all_labels.append(labels)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}, f, protocol=2)
    return np.concatenate(all_data), np.concatenate(all_labels)


def test_cifar10_pickle_dir(tmp_path: Path) -> None:
    rows, labels = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path, search_val_per_class=2, seed=0)  # parent dir is accepted too
    assert ds.classes == CIFAR_CLASSES and ds.mean == data.CIFAR_MEAN
    assert len(ds.train) == 80 and len(ds.search_val) == 20 and len(ds.test) == 20
    assert ds.search_val.labels.bincount().tolist() == [2] * 10
    expected = torch.from_numpy(rows[100:].reshape(-1, 3, 32, 32))
    assert torch.equal(ds.test.images, expected) and ds.test.labels.tolist() == labels[100:].tolist()
    train_rows = {r.tobytes() for r in rows[:100]}
    assert set(row_keys(ds.train.images)) | set(row_keys(ds.search_val.images)) == train_rows
    again = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", search_val_per_class=2, seed=0)
    assert torch.equal(again.search_val.images, ds.search_val.images)


def test_error_missing_and_empty_dirs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", tmp_path / "nope")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_dataset("imagefolder", tmp_path / "empty")
    make_folder(tmp_path / "novals", {"a": (1, 0)})
    (tmp_path / "novals" / "val" / "a").rmdir()
    (tmp_path / "novals" / "val").rmdir()
    with pytest.raises(DataError, match="val/"):
        load_dataset("imagefolder", tmp_path / "novals")
    (tmp_path / "cifar").mkdir()
    with pytest.raises(DataError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path / "cifar")
    with pytest.raises(DataError, match="needs a dataset path"):
        load_dataset("imagefolder", None)
    with pytest.raises(DataError, match="kind"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="positive stds"):
        load_dataset("embedded", normalization=((0.5, 0.5, 0.5), (0.2, 0.0, 0.2)))


def test_error_mismatched_classes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds", {"cat": (2, 1), "dog": (2, 0)})
    (root / "val" / "dog").rmdir()
    (root / "val" / "bird").mkdir()
    with pytest.raises(DataError, match=r"only in train: \['dog'\], only in val: \['bird'\]"):
        load_dataset("imagefolder", root, search_val_per_class=1)


def test_error_empty_class_and_too_few_images(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds", {"cat": (2, 1), "dog": (2, 1)})
    with pytest.raises(DataError, match="'cat' has 2 training images"):
        load_dataset("imagefolder", root, search_val_per_class=2)
    for f in (root / "val" / "dog").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"without images: \['dog'\]"):
        load_dataset("imagefolder", root, search_val_per_class=1)


def test_error_truncated_jpeg_names_file(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds", {"cat": (3, 1), "dog": (3, 1)}, size=(64, 64))
    bad = root / "train" / "dog" / "001.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(DataError, match=r"001\.jpg") as info:
        load_dataset("imagefolder", root, search_val_per_class=1)
    assert str(bad) in str(info.value)
    # streamed images fail the same way, at iteration time
    streamed = load_dataset("imagefolder", root, search_val_per_class=1, max_cached_images=1, num_workers=0)
    with pytest.raises(DataError, match=r"001\.jpg"):
        for split in data.SPLITS:
            list(streamed.loader(split, 1, train=False))


def test_loader_argument_errors(embedded: Dataset) -> None:
    with pytest.raises(ValueError, match="world_size"):
        embedded.loader("train", 63, world_size=2)
    with pytest.raises(ValueError, match="split"):
        embedded.loader("validation", 8)
    loader = embedded.loader("train", 8, seed=0)
    with pytest.raises(ValueError, match="seed"):
        loader.load_state_dict({**loader.state_dict(), "seed": 1})


def test_random_resized_crop_matches_interpolate_reference() -> None:
    x = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = data._resized_crop_flip(x, data._generator("rrc"), 8, 0, 48)
    g = data._generator("rrc")  # replay the parameter draws in the same order
    area = 64 * 64 * torch.empty(8, 10).uniform_(0.08, 1.0, generator=g)
    ratio = torch.exp(torch.empty(8, 10).uniform_(np.log(3 / 4), np.log(4 / 3), generator=g))
    w, h = torch.sqrt(area * ratio).round(), torch.sqrt(area / ratio).round()
    pick = ((w <= 64) & (h <= 64)).float().argmax(1)[:, None]
    w, h = w.gather(1, pick)[:, 0].int(), h.gather(1, pick)[:, 0].int()
    x0, y0 = (torch.floor(torch.rand(8, generator=g) * (64 - s + 1)).int() for s in (w, h))
    flip = torch.rand(8, generator=g) < 0.5
    for i in range(8):
        crop = x[i : i + 1, :, y0[i] : y0[i] + h[i], x0[i] : x0[i] + w[i]].float()
        ref = torch.nn.functional.interpolate(crop, (48, 48), mode="bilinear", align_corners=False)[0]
        ref = ref.flip(-1) if flip[i] else ref
        torch.testing.assert_close(out[i, :, 2:-2, 2:-2], ref[:, 2:-2, 2:-2], rtol=0, atol=0.01)  # borders differ by design
