"""One supernet step: the FairNAS strict-fairness step (every choice of every layer once, gradients accumulated,
the shared stem run once), micro-batches, the shared-gradient scaling, and in-place distillation from the largest
path. ``supernet.train`` runs it inside its loop; the design notes are in that module's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet.model import cost_tables
from supernet.optim import Precision
from supernet.sampler import Genes
from supernet.space import SearchSpace
from supernet.supernet import Supernet


@dataclass
class StepStats:
    """What one step's ``step_fn`` reports (this rank's share)."""

    loss: float  # mean cross-entropy over paths (without the distillation term: curves stay comparable)
    correct: float  # fraction of correct predictions, mean over paths
    path_images: int  # images x paths processed


def supernet_step(
    net: Supernet,
    x: Tensor,
    y: Tensor,
    paths: Sequence[Genes],
    criterion: nn.Module,
    precision: Precision,
    shared_grad: str = "mean",
    micro_batches: int = 1,
    distill: float = 0.0,
    teacher: Genes | None = None,
) -> StepStats:
    """All gradients of one supernet step (before the single optimizer update).

    ``micro_batches=k`` splits the batch into k chunks (BN statistics per chunk, gradients averaged):
    what k DDP ranks compute, on one process - and a way to fit large batches in memory.
    ``distill > 0``: in-place distillation from ``teacher`` (default: ``teacher_genes(net.space)``, per call).
    """
    chunks = list(zip(x.tensor_split(micro_batches), y.tensor_split(micro_batches), strict=True))
    stats = [fair_step(net, xc, yc, paths, criterion, precision, 1.0 / len(chunks), distill, teacher) for xc, yc in chunks]
    if shared_grad == "mean" and len(paths) > 1:
        # Stem, separable block and head were trained by every path: average instead of summing, so
        # they see a single network's gradient scale. Choice blocks were each trained once: untouched.
        for p in net.shared_parameters():
            if p.grad is not None:
                p.grad.div_(len(paths))
    return StepStats(
        sum(s.loss for s in stats) / len(stats),
        sum(s.correct for s in stats) / len(stats),
        sum(s.path_images for s in stats),
    )


def fair_step(
    net: Supernet,
    x: Tensor,
    y: Tensor,
    paths: Sequence[Genes],
    criterion: nn.Module,
    precision: Precision,
    loss_scale: float = 1.0,
    distill: float = 0.0,
    teacher: Genes | None = None,
) -> StepStats:
    """Gradients of one FairNAS step on one batch: every path on the same images, accumulated in ``.grad``.

    The stem + separable block is the same function of the same batch for every path, so it runs once:
    the paths backpropagate into a detached copy of its output, and the summed feature gradient flows
    back through it once - the same gradients as m full passes, at 1/m of the shared part's cost.
    """
    with precision.autocast():
        features = net.shared_features(x)
    # float32 leaf: under autocast the m paths' feature gradients are summed in float32, not in half precision
    detached = features.detach().float().requires_grad_()
    soft = None
    if distill:  # the teacher, without gradients; in train mode it updates its blocks' BN running statistics
        with torch.no_grad(), precision.autocast():
            soft = F.softmax(net.forward_path(detached, teacher or teacher_genes(net.space)).float(), dim=1)
    losses, hits = [], []
    for genes in paths:  # path k takes choice perm_l[k] at layer l
        with precision.autocast():
            logits = net.forward_path(detached, genes)
            loss = criterion(logits, y)
            objective = loss if soft is None else distill_loss(loss, logits, soft, distill)
        precision.backward(objective * loss_scale)  # choice blocks + head; ``detached.grad`` accumulates (scaled alike)
        losses.append(loss.detach().float())
        hits.append((logits.detach().argmax(1) == y).float().mean())
    features.backward(detached.grad.to(features.dtype))  # the shared part, once, with the sum over paths
    values = torch.stack([*losses, *hits]).tolist()  # one device-to-host copy per step, not 2m
    loss_sum, correct = sum(values[: len(paths)]), sum(values[len(paths) :])
    return StepStats(loss_sum / len(paths), correct / len(paths), len(paths) * len(x))


def teacher_genes(space: SearchSpace) -> Genes:
    """The largest path: per layer the choice with the most multiply-adds (ties: the lowest index)."""
    return tuple(int(np.argmax(macs)) for macs in cost_tables(space)[3])  # argmax: the first maximum


def distill_loss(ce: Tensor, logits: Tensor, soft: Tensor, distill: float) -> Tensor:
    """(1 - d) x cross-entropy + d x KL(soft || softmax(logits)), the KL averaged over the batch."""
    kl = F.kl_div(F.log_softmax(logits.float(), dim=1), soft, reduction="batchmean")
    return (1.0 - distill) * ce + distill * kl
