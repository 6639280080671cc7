"""Supernet accuracy estimates for candidate subnets, with per-candidate BN recalibration.

What one estimate is (the definition both evaluation paths implement, and the tests pin down):

1. Take the supernet's weights for the candidate's path (as ``Supernet.extract`` would).
2. Reset the BN statistics of every BN on the path *after* the shared stem/separable block, i.e. the
   chosen block of each searchable layer and the head, and recompute them the standard SPOS/OFA way:
   those parts in train mode with ``momentum=None`` (cumulative average), forward the calibration
   images in chunks of ``calib_batch_size``. The stored mean/variance are the averages of the per-chunk
   statistics; with ``calib_batch_size >= calib_images`` they are the exact full-batch statistics.
   The calibration images are the same for every candidate (``Dataset.calibration_batch``: training
   images drawn at random across classes with a fixed seed, eval preprocessing).
3. Top-1 accuracy (percent) of the network in eval mode on the search-time validation split, and minus the mean
   cross-entropy of the same logits (``score`` picks which one ``evaluate`` returns).

The stem and separable block keep their trained statistics. They are architecture-independent: their
input is the image itself, so the running statistics accumulated during supernet training already
describe the true input distribution, and no path mismatch exists to be corrected. Keeping them makes
their output a per-image constant, which is what lets us cache it once per evaluator.

Why a trie. In step 2 layer ``l``'s calibration input is the train-mode output of layers ``< l``, and its
validation input is the eval-mode output of layers ``< l`` with their recalibrated statistics; so its
statistics and outputs depend only on the choices of layers ``<= l`` - the architecture's *prefix*.
(Calibration activations flow in train mode, each BN normalising with its chunk's statistics, exactly as in
the usual whole-network recalibration pass. Feeding the next layer eval-mode outputs instead would define a
slightly different estimate and cost a third pass per block.) So a population is evaluated by a
depth-first walk over the trie of its genomes: every distinct prefix (trie node) runs its block once on
the calibration activations (train mode, recalibrating the block's BNs) and once on the validation
activations (eval mode, with the statistics just computed); each leaf recalibrates and runs the head.
Chains of single-child nodes run chunk-major, like an ordinary forward pass. A block's statistics are
used at once and never needed again, so the same choice block can be reused under another prefix
without saving its buffers per node. Evaluating one candidate at a time is the walk over a one-path trie,
so both give bit-identical logits (every block sees the same chunks in the same order); and because the
calibration activations flow in train mode exactly as in a whole-network recalibration pass, both also
equal ``extract(arch)`` + standard recalibration of the path's BNs (a test).

Memory: activations are kept as the chunks they were computed in, and the walk holds one (calibration,
validation) pair per pending branch point of the trie, at most one per depth; the stem-feature cache costs
(calibration + validation images) x its feature size. ``working_set`` computes both from the space's shapes
(float32): in the MoGA space at 224² the cache takes 0.80 MB per image and the walk at most 1.80 MB per image,
so 1,000 calibration + 10,000 validation images need 8.8 GB + 19.8 GB. ``max_working_bytes`` (default: half the
GPU's memory on CUDA, unbounded on CPU) bounds it: past the bound the stem-feature cache stays in (pinned) host
memory and its chunks are copied to the device as a segment consumes them, and if the walk alone is still too
large the validation images are walked in groups, each group one walk over the whole trie with the
calibration recomputed. Groups give bit-identical logits (the calibration sees the same chunks in the same
order), at the cost of repeating the calibration passes once per group.

The supernet's own BN buffers and train/eval flags are restored after every call. The evaluator is
bound to the supernet's weights at the time it first evaluates (the cached stem features): build a new
one after the weights change, and do not train the supernet while an evaluation runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from supernet.arch import Arch
from supernet.config import EvalConfig
from supernet.data import Dataset, TensorLoader
from supernet.errors import UserError
from supernet.model import MobileNet
from supernet.supernet import Supernet

Genes = tuple[int, ...]
SCORES = ("accuracy", "neg_loss")  # what ``evaluate`` returns per path: top-1 % or minus the mean cross-entropy


@dataclass(frozen=True)
class _Activations:
    """Activations at one point of the trie (the stem features, or a branch point's outputs): train-mode on
    the calibration images, eval-mode on the validation images.

    Kept as the list of chunks they were computed in: the chunk boundaries are fixed once (calibration
    batches; evaluation chunks) and every later block runs chunk by chunk, so nothing is ever concatenated.
    """

    calib: list[Tensor] | None  # None when recalibration is off
    val: list[Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*(self.calib or []), *self.val])


# ----------------------------------------------------------------------------- helpers
def _batchnorms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def _start_recalibration(module: nn.Module) -> None:
    """Forget the module's BN statistics; the next train-mode passes accumulate a cumulative average."""
    for bn in _batchnorms(module):
        bn.reset_running_stats()
        bn.momentum = None
    module.train()


@contextmanager
def _restored(net: nn.Module, parts: Sequence[nn.Module]) -> Iterator[None]:
    """Around code that rewrites the BN statistics in ``parts``: put back every buffer and train/eval flag."""
    flags = [(m, m.training) for m in net.modules()]
    saved = [
        (bn, bn.momentum, bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
        for part in parts
        for bn in _batchnorms(part)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, momentum, mean, var, tracked in saved:
                bn.momentum = momentum
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked.copy_(tracked)
        for m, training in flags:
            m.training = training


def _chunks(x: Tensor, batch_size: int) -> list[Tensor]:
    if len(x) == 0:
        raise ValueError("no images to run: the calibration or validation set is empty")
    return list(x.split(batch_size))


def _build_trie(genomes: Sequence[Genes]) -> dict[int, Any]:
    """Nested dicts choice -> subtrie; a full genome ends in an empty dict."""
    root: dict[int, Any] = {}
    for genes in genomes:
        node = root
        for g in genes:
            node = node.setdefault(g, {})
    return root


def extract_recalibrated(net: Supernet, arch: Arch, images: Tensor, batch_size: int) -> MobileNet:
    """The straightforward form of the definition: a standalone network for ``arch`` whose BN statistics
    after the stem/separable block are recomputed on ``images`` (train mode, ``momentum=None``, chunks of
    ``batch_size``). Returned in eval mode. ``SubnetEvaluator`` gives the same logits without extracting."""
    model = net.extract(arch).eval()
    for part in (model.layers, model.head):
        _start_recalibration(part)
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            model(images[i : i + batch_size])
    return model.eval()


@dataclass(frozen=True)
class WorkingSet:
    """Bytes per image (float32) of the evaluator's device memory: the stem-feature cache, and the trie walk's
    worst case (one activation per depth pending, plus a segment's output)."""

    cache_per_image: int
    walk_per_image: int

    def total(self, calib_images: int, val_images: int) -> int:
        return (self.cache_per_image + self.walk_per_image) * (calib_images + val_images)


def working_set(net_or_space: Supernet | Any) -> WorkingSet:
    """``WorkingSet`` of a supernet's (or a ``SearchSpace``'s) shapes."""
    space = getattr(net_or_space, "space", net_or_space)
    shared = space.separable or space.stem
    outs = [space.layer_shape(i, 0) for i in range(len(space.n_choices))]
    sizes = [s.out_ch * s.out_hw * s.out_hw for s in outs]
    return WorkingSet(4 * shared.out_ch * shared.out_hw**2, 4 * (sum(sizes) + max(sizes)))


def count_prefixes(genomes: Sequence[Sequence[int]]) -> int:
    """Number of distinct non-empty prefixes (trie nodes) of a population: the blocks a trie walk runs."""
    return len({tuple(g[: i + 1]) for g in genomes for i in range(len(g))})


# ----------------------------------------------------------------------------- evaluator
class SubnetEvaluator:
    """Top-1 accuracy (%) of supernet paths on the search-time validation split, BN-recalibrated per path.

    ``calib_images=0`` switches recalibration off (the supernet's running statistics are used);
    ``eval_images=0`` uses the whole ``search_val`` split, otherwise a seeded random subset of it.
    ``calib_batch_size`` is the recalibration batch and so part of the definition of the estimate;
    ``batch_size`` only chunks the evaluation passes (on CPU, chunks of ~100 images at 32² keep the
    activations cache-resident and run about twice as fast as chunks of 500). ``channels_last`` (NHWC)
    is ~1.5x faster on CPU; it changes float rounding, so keep it fixed within one search. ``score`` chooses what
    ``evaluate`` returns: ``accuracy`` (top-1 %) or ``neg_loss`` (minus the mean cross-entropy of the same
    logits). Both are cached by architecture string in ``cache``.
    """

    def __init__(
        self,
        net: Supernet,
        dataset: Dataset,
        calib_images: int = 1000,
        eval_images: int = 0,
        batch_size: int = 100,
        seed: int = 0,
        device: torch.device | str | None = None,
        channels_last: bool = True,
        use_trie: bool = True,
        *,
        calib_batch_size: int = 100,
        progress: bool = False,
        max_working_bytes: int | None = None,
        score: str = "accuracy",
    ) -> None:
        net_device = next(net.parameters()).device
        if device is not None and torch.device(device) != net_device:
            raise ValueError(f"the supernet is on {net_device}, not {device}: move it before building the evaluator")
        if calib_images < 0 or eval_images < 0 or batch_size < 1 or calib_batch_size < 1:
            raise ValueError(f"invalid evaluator sizes: {calib_images=}, {eval_images=}, {batch_size=}, {calib_batch_size=}")
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}: use one of {', '.join(SCORES)}")
        if any(isinstance(m, nn.SyncBatchNorm) for m in net.modules()):
            # Ranks evaluate different candidates: synchronised statistics would mix (or hang) them.
            raise ValueError("the supernet has SyncBatchNorm layers: evaluate a copy with plain BatchNorm2d")
        self.net, self.dataset, self.device = net, dataset, net_device
        self.calib_images, self.eval_images, self.seed = calib_images, eval_images, seed
        self.batch_size = batch_size
        self.calib_batch_size = calib_batch_size
        self.channels_last, self.use_trie, self.progress = channels_last, use_trie, progress
        if max_working_bytes is None and net_device.type == "cuda":
            max_working_bytes = torch.cuda.get_device_properties(net_device).total_memory // 2
        self.max_working_bytes = max_working_bytes  # None: unbounded
        self.score = score
        self.cache: dict[str, tuple[float, float]] = {}  # architecture -> (accuracy %, minus cross-entropy)
        # Work counters, for tests and benchmarks: blocks run (trie nodes) and heads run (leaves).
        self.blocks_run = 0
        self.heads_run = 0
        self.peak_activation_bytes = 0  # largest trie working set seen (cached stem features excluded)
        self._shared: _Activations | None = None
        self._labels: Tensor | None = None

    @classmethod
    def from_config(cls, net: Supernet, dataset: Dataset, cfg: EvalConfig, seed: int = 0, **kwargs: Any) -> SubnetEvaluator:
        """From the config's evaluation section (``supernet.eval``); ``kwargs``: ``device``, ``use_trie``, ``progress``, ..."""
        sizes = {"calib_images": cfg.calib_images, "eval_images": cfg.images, "batch_size": cfg.batch_size}
        layout = {"channels_last": cfg.channels_last, "calib_batch_size": cfg.calib_batch_size, "score": cfg.score}
        return cls(net, dataset, **sizes, seed=seed, **(layout | kwargs))

    # ------------------------------------------------------------------ public API
    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        """The configured score (``score``: accuracy in percent, or minus the cross-entropy) of each architecture;
        cached ones are not recomputed."""
        column = SCORES.index(self.score)
        return [float(v) for v in self.scores(archs)[:, column]]

    def scores(self, archs: Sequence[Arch]) -> np.ndarray:
        """Per architecture, (top-1 accuracy %, minus the mean cross-entropy) from the same validation logits:
        the loss is a less quantised statistic of the same predictions. Cached by architecture string."""
        keys = [self._key(a) for a in archs]
        todo = {k: a for k, a in zip(keys, archs, strict=True) if k not in self.cache}
        if todo:
            labels = self._shared_activations()[1]
            for key, logits in zip(todo, self._logits([a.genes for a in todo.values()]), strict=True):
                accuracy = 100.0 * int((logits.argmax(1) == labels).sum()) / len(labels)
                self.cache[key] = (accuracy, -float(F.cross_entropy(logits.float(), labels)))
        return np.array([self.cache[k] for k in keys], dtype=np.float64).reshape(-1, 2)

    def logits(self, archs: Sequence[Arch]) -> list[Tensor]:
        """Validation logits of each architecture (not cached): for ensembles, debugging and tests."""
        for a in archs:
            self._key(a)
        return self._logits([a.genes for a in archs])

    @property
    def labels(self) -> Tensor:
        """Labels of the validation images, in the order of the rows of ``logits``."""
        return self._shared_activations()[1]

    def settings(self) -> dict[str, Any]:
        """What an estimate depends on besides the supernet weights; stored with a persisted cache."""
        space = self.net.space
        return {
            "space": space.name,
            "num_classes": space.num_classes,
            "resolution": space.resolution,
            "width_mult": space.width_mult,
            "variant": space.variant,
            "calib_images": self.calib_images,
            "calib_batch_size": self.calib_batch_size if self.calib_images else 0,
            "val_images": self._num_val_images(),
            "seed": self.seed,
            "channels_last": self.channels_last,  # changes float rounding, so possibly an argmax
            "score": self.score,
        }

    # ------------------------------------------------------------------ inputs, computed once
    def _key(self, arch: Arch) -> str:
        space = self.net.space
        if arch.space.name != space.name or arch.space.n_choices != space.n_choices:
            raise ValueError(f"architecture of space {arch.space.name!r} does not fit a {space.name!r} supernet")
        return str(arch)

    def _num_val_images(self) -> int:
        n = len(self.dataset.search_val)
        return min(n, self.eval_images) if self.eval_images else n

    def _validation_loader(self) -> TensorLoader:
        split = self.dataset.search_val
        idx = torch.arange(len(split))
        if self._num_val_images() < len(split):
            # A seeded random subset: the split is ordered by class, so a prefix would miss classes.
            g = torch.Generator().manual_seed(self.seed)
            idx = torch.randperm(len(split), generator=g)[: self.eval_images].sort().values
        d = self.dataset
        return TensorLoader(
            split.fetch(idx), split.labels[idx], self.batch_size, False, self.seed, d.resolution, d.mean, d.std,
            augment=d.augment, channels_last=self.channels_last,
        )  # fmt: skip

    def _shared_activations(self) -> tuple[_Activations, Tensor]:
        """Stem (+ separable) features of the calibration and validation images, and the labels."""
        if self._shared is None or self._labels is None:
            stem = self.net.shared_features
            keep = self._cache_on_host()
            with _restored(self.net, []), torch.inference_mode():
                self.net.stem.eval()
                self.net.separable.eval()
                calib = None
                if self.calib_images:
                    images = self.dataset.calibration_batch(self.calib_images, self.seed, self.channels_last).to(self.device)
                    calib = [keep(stem(x)) for x in _chunks(images, self.calib_batch_size)]
                feats, labels = zip(*((keep(stem(x.to(self.device))), y) for x, y in self._validation_loader()), strict=True)
                self._shared = _Activations(calib, list(feats))
                self._labels = torch.cat(labels).to(self.device)
        return self._shared, self._labels

    def _cache_on_host(self) -> Callable[[Tensor], Tensor]:
        """Where stem features are kept: on the device if cache and walk fit ``max_working_bytes``, else in
        host memory (pinned for fast non-blocking copies); returns the function that puts a chunk there."""
        need = working_set(self.net).total(self.calib_images, self._num_val_images())
        if self.max_working_bytes is None or need <= self.max_working_bytes or self.device.type == "cpu":
            return lambda t: t
        pinned = self.device.type == "cuda"
        return lambda t: t.cpu().pin_memory() if pinned else t.cpu()

    def _val_groups(self, n_chunks: int) -> list[slice]:
        """Validation chunks walked together: all of them, or groups whose walk fits ``max_working_bytes``."""
        if self.max_working_bytes is None:
            return [slice(0, n_chunks)]
        ws, calib = working_set(self.net), self.calib_images
        room = self.max_working_bytes - ws.walk_per_image * calib
        per_chunk = ws.walk_per_image * self.batch_size
        if room < per_chunk:
            raise UserError(
                f"subnet evaluation: {calib} calibration images and one chunk of {self.batch_size} need "
                f"{(ws.walk_per_image * calib + per_chunk) / 2**30:.1f} GiB of activations, more than the "
                f"{self.max_working_bytes / 2**30:.1f} GiB allowed; lower supernet.eval.calib_images or supernet.eval.batch_size"
            )
        step = max(1, min(n_chunks, room // per_chunk))
        return [slice(i, i + step) for i in range(0, n_chunks, step)]

    # ------------------------------------------------------------------ the walk
    def _logits(self, genomes: Sequence[Genes]) -> list[Tensor]:
        """Logits for each genome (duplicates computed once), via the trie or one path at a time."""
        distinct = list(dict.fromkeys(genomes))
        groups = [sorted(distinct)] if self.use_trie else [[g] for g in distinct]
        root, _ = self._shared_activations()
        val_groups = self._val_groups(len(root.val))
        total = sum(count_prefixes(group) for group in groups) * len(val_groups)
        out: dict[Genes, list[Tensor]] = {}
        with (
            tqdm(total=total, desc="subnet eval", unit="block", leave=False, disable=not self.progress) as bar,
            _restored(self.net, [*self.net.layers, self.net.head]),
            torch.inference_mode(),
        ):
            for part in val_groups:
                view = _Activations(root.calib, root.val[part])
                for group in groups:
                    for genes, logits in self._walk(group, bar, view):
                        out.setdefault(genes, []).append(logits)
        return [torch.cat(out[g]) for g in genomes]

    def _walk(self, genomes: Sequence[Genes], bar: tqdm, root: _Activations) -> Iterator[tuple[Genes, Tensor]]:
        """Depth-first over the trie of ``genomes``, each distinct prefix's block run once; yields (genes, logits).

        The walk goes segment by segment: from a node it follows single-child links down to the next branch
        point or leaf and runs that chain chunk-major (each chunk through all of its blocks before the next
        chunk), so a chunk stays in cache between layers and only branch points' activations are stored.
        Stack entries hold a reference to their parent's activations, so those live only while some child
        is still pending: memory is one activation pair per pending branch point.
        """
        stack = [((c,), root, sub) for c, sub in sorted(_build_trie(genomes).items(), reverse=True)]
        while stack:
            prefix, inputs, node = stack.pop()
            start = len(prefix) - 1
            while len(node) == 1:  # extend the segment along single-child links
                ((choice, node),) = node.items()
                prefix = (*prefix, choice)
            blocks = [self.net.layers[layer][prefix[layer]] for layer in range(start, len(prefix))]
            acts = self._run_segment(blocks, inputs, None if node else self.net.head)
            self._track_memory(stack, [inputs, acts] if node else [inputs], root)
            del inputs  # the last pending child releases its parent's activations here
            bar.update(len(blocks))
            if node:
                stack.extend(((*prefix, c), acts, sub) for c, sub in sorted(node.items(), reverse=True))
            else:
                yield prefix, torch.cat(acts.val)
            del acts

    def _run_segment(self, blocks: list[nn.Module], inputs: _Activations, head: nn.Module | None) -> _Activations:
        """Run a chain of blocks (and, at a leaf, the head) chunk by chunk: first recalibrate, then evaluate.

        Recalibration: every BN of the chain is reset, then each calibration chunk goes through the blocks in
        train mode - BN normalises with the chunk's statistics and adds them to its cumulative average, as in
        a whole-network recalibration pass. Of the head only the first conv runs: its BN is the only one.
        Evaluation: the validation chunks in eval mode, with the statistics just computed. Returns the
        chain's outputs, or at a leaf the logits (as ``val``).
        """
        self.blocks_run += len(blocks)
        self.heads_run += head is not None
        parts = [*blocks, head] if head is not None else blocks
        calib = None
        if inputs.calib is not None:
            for part in parts:
                _start_recalibration(part)
            calib = []
            for x in inputs.calib:
                x = x.to(self.device, non_blocking=True)  # a no-op unless the stem features are kept on the host
                for block in blocks:
                    x = block(x)
                if head is None:
                    calib.append(x)
                else:
                    head.conv(x)
        for part in parts:
            part.eval()
        val = []
        for x in inputs.val:
            x = x.to(self.device, non_blocking=True)
            for block in blocks:
                x = block(x)
            val.append(x if head is None else head(x))
        return _Activations(calib if head is None else None, val)

    # ------------------------------------------------------------------ bookkeeping
    def _track_memory(
        self, stack: list[tuple[Genes, _Activations, dict[int, Any]]], current: list[_Activations], root: _Activations
    ) -> None:
        """Bytes of activations alive while a segment runs: pending branch points, its input and its output."""
        live = {id(acts): acts for acts in [*(a for _, a, _ in stack), *current] if acts is not root}
        self.peak_activation_bytes = max(self.peak_activation_bytes, sum(a.nbytes for a in live.values()))
