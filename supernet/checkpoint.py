"""Checkpoints, training curves and run planning, shared by the supernet trainer and standalone training.

A run directory holds ``last.pt`` (the training checkpoint: atomic, ``weights_only`` loadable) and, once
finished, a final file (``supernet.pt`` / ``model.pt``) carrying the run's fingerprint - everything the trained
weights depend on. ``plan_run`` decides from them whether to start, resume, reuse or refuse: never overwrite.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from supernet.data import Dataset
from supernet.errors import UserError
from supernet.io import atomic_write_bytes, atomic_write_text, differences
from supernet.readers import torch_load_plain
from supernet.space import SearchSpace, space_spec

CHECKPOINT_FORMAT = "moga-train-checkpoint-v1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to bytes, then an atomic write: a crash never leaves a half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", expect: str | None = None) -> dict[str, Any]:
    """Load with ``weights_only=True``; a missing, corrupt or foreign file is a ``UserError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    state = torch_load_plain(path, map_location)
    if not isinstance(state, dict) or (expect is not None and state.get("format") != expect):
        raise UserError(f"{path}: not a moga checkpoint (expected format {expect!r})")
    return state


def state_dict_misfit(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str:
    """The first difference between two state dicts' names and shapes, readable; "" when they fit."""
    for name in sorted(expected.keys() - found.keys()):
        return f"no {name}"
    for name in sorted(found.keys() - expected.keys()):
        return f"unexpected {name}"
    for name, tensor in expected.items():
        other = found[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            return f"{name} is {shape}, the model has {tuple(tensor.shape)}"
    return ""


def check_resumable(model: nn.Module, checkpoint: dict[str, Any], path: Path) -> None:
    """A ``UserError`` if the training checkpoint at ``path`` holds weights of other names or shapes; trainers
    call it before they write anything into the run directory, so a refused resume leaves it as it was."""
    misfit = state_dict_misfit(model.state_dict(), checkpoint["model"])
    if misfit:
        raise UserError(f"{path}: weights do not fit the model being trained ({misfit}); delete it to start afresh")


CURVE_COLUMNS = ("step", "loss", "train_acc", "lr", "images_per_s", "elapsed_s", "val_acc", "val_acc_best")


@dataclass
class Curves:
    """One row per optimizer update; ``val_acc``/``val_acc_best`` only on validation steps.

    ``images_per_s`` counts path-images (batch x paths per step / step time), comparable to a
    standalone network's training throughput.
    """

    rows: list[dict[str, float]] = field(default_factory=list)

    def add(self, **row: float) -> None:
        self.rows.append(row)

    def write(self, out_dir: Path) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, CURVE_COLUMNS, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in self.rows)
        atomic_write_text(out_dir / "curves.csv", text.getvalue())
        self._plot(out_dir / "curves.png")

    def _plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.rows]
        val = [(r["step"], r["val_acc"], r.get("val_acc_best", r["val_acc"])) for r in self.rows if "val_acc" in r]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
        ax_loss.plot(steps, [r["loss"] for r in self.rows], lw=1)
        ax_loss.set(xlabel="step", ylabel="training loss (mean over paths)")
        ax_acc.plot(steps, [r["train_acc"] for r in self.rows], lw=1, label="train (paths of the step)")
        if val:
            s, mean, best = zip(*val, strict=True)
            ax_acc.plot(s, mean, "o-", label="validation, random paths (mean)")
            ax_acc.plot(s, best, "^--", label="validation, random paths (best)")
        ax_acc.set(xlabel="step", ylabel="accuracy (%)")
        ax_acc.legend(fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        atomic_write_bytes(path, buffer.getvalue())


def load_fitting(model: nn.Module, weights: dict[str, Any], path: str | Path, names: str) -> None:
    """Load ``weights`` into ``model``; a ``UserError`` naming the first misfit if they do not fit the
    ``names`` ("space", "architecture") the file at ``path`` names."""
    misfit = state_dict_misfit(model.state_dict(), weights)
    if misfit:
        raise UserError(
            f"{path}: weights do not fit the {names} it names ({misfit}); a {'supernet' if names == 'space' else 'model'} "
            "saved before moga cropped kernels to the feature map (small resolutions) has to be trained again"
        )
    model.load_state_dict(weights)


# ----------------------------------------------------------------------------- run planning
def space_digest(space: SearchSpace) -> str:
    """Short hash of a space's full spec (layers included): pins down the space in a fingerprint."""
    return hashlib.sha256(repr(space_spec(space)).encode()).hexdigest()[:12]


def data_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """What of the dataset the trained weights depend on (its classes, training images, resolution)."""
    return {"classes": list(dataset.classes), "train_images": len(dataset.train), "resolution": dataset.resolution}


def check_classes(dataset: Dataset, space: SearchSpace) -> None:
    if len(dataset.classes) != space.num_classes:
        raise UserError(
            f"the dataset has {len(dataset.classes)} classes but the space is built for {space.num_classes} (space.num_classes)"
        )


def plan_run(
    out_dir: Path,
    final_name: str,
    final_format: str,
    what: str,
    fingerprint: dict[str, Any],
    resume: bool,
    *,
    announce: str | None = None,
    resume_finished: bool = False,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(checkpoint to resume from, final state of a finished run); at most one is set. Never overwrites a run.

    ``out_dir / final_name`` (format ``final_format``) is the finished run, ``last.pt`` the unfinished one;
    either is refused if made with another ``fingerprint``; ``what`` names the trained thing in messages.
    ``resume_finished`` (the supernet): with ``resume``, ``last.pt`` is resumed even when the run finished -
    the checkpoint is checked (format, fingerprint, weights) and the final file rewritten from it. Otherwise a
    finished run is returned as is, with a line on stderr ``"{announce}: ... nothing to do"`` if ``announce``.
    """
    last, final = out_dir / "last.pt", out_dir / final_name
    if final.exists() and not (resume and resume_finished and last.exists()):
        done = load_checkpoint(final, expect=final_format)
        if diff := differences(done.get("fingerprint"), fingerprint):
            raise UserError(
                f"{final} holds a {what} trained with other settings ({'; '.join(diff[:3])}): "
                f"use another run_dir, or delete {out_dir} to retrain"
            )
        if announce is not None:
            print(f"{announce}: {final} is already trained with these settings; nothing to do", file=sys.stderr)
        return None, done
    if not last.exists():
        return None, None
    ckpt = load_checkpoint(last, expect=CHECKPOINT_FORMAT)
    if not resume:
        raise UserError(
            f"{out_dir} holds an unfinished {what} run (step {ckpt['step']}): pass --resume to continue it, or use another run_dir"
        )
    if diff := differences(ckpt.get("fingerprint"), fingerprint):
        raise UserError(
            f"cannot resume {last}: it was trained with other settings ({'; '.join(diff[:3])}); delete it or use another run_dir"
        )
    return ckpt, None
