"""pymoo operators on integer architecture genomes (gene ``l`` in ``[0, n_choices[l])``).

All randomness comes from the generator pymoo passes as ``random_state``.

Reinforced mutation (MoreMNAS / MoGA).  :class:`MutationController` is a
per-layer categorical policy ``pi(to | layer l, from)`` stored as a logits table
``[L, C, C]`` (``C = max(n_choices)``); ``to == from`` means "keep".  A proposal
samples every layer from this policy *conditioned on at least ``min_changes``
layers changing* (exact sequential sampling via Poisson-binomial tail
probabilities), and REINFORCE uses the exact gradient of that conditional
log-probability, with a moving-average baseline ``b <- d*b + (1-d)*mean(r)``.

Reward (:func:`mutation_reward`) of an offspring ``c`` against its reference
parent ``p`` (objectives minimised, ``s`` = objective ranges, ``w`` = reward
weights normalised to sum 1, ``d = sum_j w_j (p_j - c_j) / s_j``)::

    +1.0  c Pareto-dominates p
    +0.5  neither dominates and d > 0   (net weighted improvement)
     0.0  neither dominates and d <= 0  (or equal objectives)
    -0.5  p Pareto-dominates c

Reference parent.  pymoo mutates crossover children, whose objectives are
unknown.  The reference parent of an offspring is therefore the member of the
evaluated population it was bred from closest in Hamming distance to its
pre-mutation genome (ties: best weighted normalised objective sum); ``s`` is
that population's objective range (:func:`mutation_rewards`).  Without
crossover the pre-mutation genome *is* a parent, so this is exactly MoreMNAS'
parent-vs-child reward.

Who does what.  :class:`HybridMutation` is a stateless pymoo operator: it
samples from the controller's current policy and marks each offspring with its
pre-mutation genome (``pre``) and source (``reinforced``).  The search loop owns
the controller: after the offspring are evaluated it computes their rewards and
calls ``controller.update(pre, children, rewards)`` with the controller's
offspring (``moga.search``).  Offspring of random mutation are rewarded too (the
loop reports both means) but do not train the controller.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.sampling import Sampling

Rng = np.random.Generator


def _as_choices(n_choices: Any) -> np.ndarray:
    n = np.asarray(n_choices)
    if n.ndim != 1 or n.size == 0 or not np.issubdtype(n.dtype, np.integer) or n.min() < 1:
        raise ValueError(f"n_choices must be a non-empty 1-D int array >= 1, got {n_choices!r}")
    return n.astype(np.int64)


def _check_problem(problem: Any, n: np.ndarray) -> None:
    if problem is not None and getattr(problem, "n_var", n.size) != n.size:
        raise ValueError(f"problem.n_var={problem.n_var} but len(n_choices)={n.size}")


def genome_key(x: np.ndarray) -> bytes:
    """Hashable architecture identity of a genome."""
    return np.asarray(x, dtype=np.int64).tobytes()


class ArchSampling(Sampling):
    """Uniform random genomes; with ``homogeneous``, the population starts with the networks that repeat one
    choice in every layer (all-k3e3 ... all-k7e6se: choice ``c`` is ``c mod n`` in a layer of ``n`` choices),
    which span the latency range from its cheapest to its dearest corner, and the rest random."""

    def __init__(self, n_choices: np.ndarray, homogeneous: bool = False) -> None:
        super().__init__()
        self.n_choices = _as_choices(n_choices)
        self.homogeneous = homogeneous

    def _do(self, problem: Any, n_samples: int, *args: Any, random_state: Rng, **kwargs: Any) -> np.ndarray:
        _check_problem(problem, self.n_choices)
        k = min(n_samples, int(self.n_choices.max())) if self.homogeneous else 0
        fixed = np.arange(k)[:, None] % self.n_choices[None, :]
        return np.concatenate([fixed, random_state.integers(0, self.n_choices, size=(n_samples - k, self.n_choices.size))])


class LayerCrossover(Crossover):
    """Layer-wise crossover: 2 parents -> 2 complementary offspring.

    ``two_point`` swaps the segment ``[a, b)`` with ``1 <= a < b <= L-1``; it
    falls back to ``one_point`` when ``L < 3``.  ``L == 1`` copies the parents.
    """

    KINDS = ("uniform", "one_point", "two_point")

    def __init__(self, kind: str = "uniform", prob: float = 0.9) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.kind = kind

    def swap_mask(self, n: int, L: int, rng: Rng) -> np.ndarray:
        """``True`` where offspring 1 takes the gene of parent 2 (and vice versa)."""
        idx = np.arange(L)
        if L < 2:
            return np.zeros((n, L), dtype=bool)
        if self.kind == "uniform":
            return rng.random((n, L)) < 0.5
        if self.kind == "one_point" or L < 3:
            return idx >= rng.integers(1, L, size=n)[:, None]
        cuts = np.sort(np.argsort(rng.random((n, L - 1)), axis=1)[:, :2], axis=1) + 1
        return (idx >= cuts[:, :1]) & (idx < cuts[:, 1:])

    def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Rng, **kwargs: Any) -> np.ndarray:
        p1, p2 = X[0], X[1]
        mask = self.swap_mask(p1.shape[0], p1.shape[1], random_state)
        return np.stack([np.where(mask, p2, p1), np.where(mask, p1, p2)])


def random_layer_mutation(X: np.ndarray, n_choices: np.ndarray, prob_per_layer: float, min_changes: int, rng: Rng) -> np.ndarray:
    """Resample each layer to a *different* choice w.p. ``prob_per_layer``;
    force extra random layers so that >= ``min_changes`` mutable layers change."""
    X = np.asarray(X, dtype=np.int64)
    n, L = X.shape
    mutable = n_choices > 1
    change = (rng.random((n, L)) < prob_per_layer) & mutable
    keys = np.where(change | ~mutable, 2.0, rng.random((n, L)))
    offset = 1 + np.floor(rng.random((n, L)) * (n_choices - 1)).astype(np.int64)
    need = min(min_changes, int(mutable.sum())) - change.sum(axis=1)
    order = np.argsort(keys, axis=1, kind="stable")
    for i in np.flatnonzero(need > 0):
        change[i, order[i, : need[i]]] = True
    return np.where(change, (X + offset) % n_choices, X)


class RandomLayerMutation(Mutation):
    """Random layer mutation (``prob_per_layer`` defaults to ``1/L``)."""

    def __init__(self, n_choices: np.ndarray, prob_per_layer: float | None = None, min_changes: int = 1) -> None:
        super().__init__(prob=1.0)
        self.n_choices = _as_choices(n_choices)
        self.prob_per_layer = 1.0 / self.n_choices.size if prob_per_layer is None else float(prob_per_layer)
        self.min_changes = int(min_changes)

    def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Rng, **kwargs: Any) -> np.ndarray:
        _check_problem(problem, self.n_choices)
        return random_layer_mutation(X, self.n_choices, self.prob_per_layer, self.min_changes, random_state)


class MutationController:
    """REINFORCE-trained mutation policy (see module docstring)."""

    def __init__(
        self,
        n_choices: np.ndarray,
        lr: float = 0.1,
        baseline_decay: float = 0.9,
        init_change_prob: float | None = None,
        min_changes: int = 1,
        logit_clip: float = 20.0,
    ) -> None:
        n = self.n_choices = _as_choices(n_choices)
        L, C = n.size, int(n.max())
        p = 1.0 / L if init_change_prob is None else float(init_change_prob)
        if not 0.0 < p < 1.0:
            raise ValueError(f"init_change_prob must be in (0, 1), got {p}")
        c = np.arange(C)
        self.valid = (c[None, :, None] < n[:, None, None]) & (c[None, None, :] < n[:, None, None])
        self.logits = np.zeros((L, C, C))
        self.logits[:, c, c] = np.log((1.0 - p) * np.maximum(n - 1, 1) / p)[:, None]
        self.logits[~self.valid] = 0.0
        self.lr, self.baseline_decay, self.logit_clip = float(lr), float(baseline_decay), float(logit_clip)
        self.min_changes = min(int(min_changes), int((n > 1).sum()))
        self.baseline, self.n_updates = 0.0, 0

    def probs(self, parents: np.ndarray) -> np.ndarray:
        """Unconditioned ``pi(to | l, parents[i, l])``, shape ``[n, L, C]``."""
        rows = np.arange(self.n_choices.size)[None, :]
        z = np.where(self.valid[rows, parents], self.logits[rows, parents], -np.inf)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def _stats(self, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        P = self.probs(parents)
        keep = np.arange(P.shape[-1]) == parents[..., None]
        c = np.where(keep, 0.0, P).sum(axis=-1)  # change probability per layer
        m, (n, L) = self.min_changes, c.shape
        T = np.zeros((n, L + 1, m + 1))  # T[:, l, r] = P(>= r changes among layers l..)
        T[:, :, 0] = 1.0
        for layer in reversed(range(L)):
            T[:, layer, 1:] = c[:, layer, None] * T[:, layer + 1, :-1] + (1 - c[:, layer, None]) * T[:, layer + 1, 1:]
        return P, keep, c, T

    def _check(self, genomes: np.ndarray) -> np.ndarray:
        g = np.asarray(genomes, dtype=np.int64)
        if g.ndim != 2 or g.shape[1] != self.n_choices.size or g.min(initial=0) < 0 or np.any(g >= self.n_choices):
            raise ValueError(f"genomes must be [n, {self.n_choices.size}] ints within n_choices")
        return g

    def propose(self, parents: np.ndarray, rng: Rng) -> np.ndarray:
        """Sample one child per parent genome (>= ``min_changes`` layers changed); the policy is unchanged."""
        parents = self._check(parents)
        P, keep, c, T = self._stats(parents)
        (n, L), ar = parents.shape, np.arange(len(parents))
        u_change, u_target = rng.random((n, L)), rng.random((n, L))
        need, children = np.full(n, self.min_changes), parents.copy()
        for layer in range(L):
            with np.errstate(divide="ignore", invalid="ignore"):
                p_chg = c[:, layer] * T[ar, layer + 1, np.maximum(need - 1, 0)] / T[ar, layer, need]
            change = u_change[:, layer] < np.nan_to_num(p_chg)
            q = np.where(keep[:, layer], 0.0, P[:, layer])
            cum = np.cumsum(q, axis=-1) / np.maximum(q.sum(axis=-1, keepdims=True), 1e-300)
            last = q.shape[1] - 1 - np.argmax(q[:, ::-1] > 0, axis=1)
            target = np.minimum((cum <= u_target[:, layer, None]).sum(axis=-1), last)
            children[change, layer] = target[change]
            need = np.maximum(need - change, 0)
        return children

    def log_prob(self, parents: np.ndarray, children: np.ndarray) -> np.ndarray:
        """Log-probability of ``parents[i] -> children[i]`` under the policy conditioned on ``min_changes``."""
        parents, children = self._check(parents), self._check(children)
        P, _, _, T = self._stats(parents)
        rows, layers = np.arange(len(parents))[:, None], np.arange(parents.shape[1])
        return np.log(P[rows, layers, children]).sum(axis=1) - np.log(T[:, 0, self.min_changes])

    def grad_log_prob(self, parents: np.ndarray, children: np.ndarray) -> np.ndarray:
        """Gradient of the conditional log-prob w.r.t. rows ``logits[l, parents[i, l]]``."""
        P, keep, c, T = self._stats(parents)
        g = (np.arange(P.shape[-1]) == children[..., None]) - P
        m, (n, L) = self.min_changes, c.shape
        if m > 0:  # d log P(>= m changes) / d c_l = P(exactly m-1 changes among other layers)
            A, B = np.zeros((n, L + 1, m)), np.zeros((n, L + 1, m))
            A[:, 0, 0] = B[:, L, 0] = 1.0
            for k in range(L):
                A[:, k + 1] = (1 - c[:, k, None]) * A[:, k]
                A[:, k + 1, 1:] += c[:, k, None] * A[:, k, :-1]
                j = L - 1 - k
                B[:, j] = (1 - c[:, j, None]) * B[:, j + 1]
                B[:, j, 1:] += c[:, j, None] * B[:, j + 1, :-1]
            others = np.einsum("nlk,nlk->nl", A[:, :L], B[:, 1:, ::-1])
            p_keep = np.where(keep, P, 0.0).sum(axis=-1)
            g += (others / T[:, 0, m, None] * p_keep)[..., None] * (keep - P)
        return g

    def update(self, parents: np.ndarray, children: np.ndarray, rewards: np.ndarray) -> None:
        """One REINFORCE step on a batch of proposals ``parents[i] -> children[i]`` rewarded ``rewards[i]``;
        advantage = reward - moving-average baseline."""
        rewards = np.asarray(rewards, dtype=float).reshape(-1)
        parents, children = self._check(parents), self._check(children)
        if len(rewards) != len(parents):
            raise ValueError(f"{len(rewards)} rewards for {len(parents)} actions")
        if len(rewards) == 0:
            return
        adv = rewards - self.baseline
        G = np.zeros_like(self.logits)
        rows = np.broadcast_to(np.arange(self.n_choices.size), parents.shape)
        np.add.at(G, (rows, parents), adv[:, None, None] * self.grad_log_prob(parents, children))
        self.logits = np.clip(self.logits + self.lr * G / len(rewards), -self.logit_clip, self.logit_clip)
        self.logits[~self.valid] = 0.0
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * float(rewards.mean())
        self.n_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (exact float round trip through ``json``)."""
        keys = ("lr", "baseline_decay", "logit_clip", "min_changes", "baseline", "n_updates")
        return {"n_choices": self.n_choices.tolist(), "logits": self.logits.tolist()} | {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["n_choices"]) != self.n_choices.tolist():
            raise ValueError(f"n_choices mismatch: {state['n_choices']} vs {self.n_choices.tolist()}")
        logits = np.asarray(state["logits"], dtype=float)
        if logits.shape != self.logits.shape:
            raise ValueError(f"logits shape {logits.shape} != {self.logits.shape}")
        self.logits = logits
        self.lr, self.baseline_decay = float(state["lr"]), float(state["baseline_decay"])
        self.logit_clip, self.baseline = float(state["logit_clip"]), float(state["baseline"])
        self.min_changes, self.n_updates = int(state["min_changes"]), int(state["n_updates"])


def mutation_reward(child_F: np.ndarray, parent_F: np.ndarray, scale: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Reward per row (see module docstring); all objectives minimised."""
    c, p = np.atleast_2d(np.asarray(child_F, float)), np.atleast_2d(np.asarray(parent_F, float))
    w = np.ones(c.shape[1]) if weights is None else np.asarray(weights, float)
    s = np.where(np.asarray(scale, float) > 0, scale, 1.0)
    d = ((p - c) / s) @ (w / w.sum())
    dom = np.all(c <= p, axis=1) & np.any(c < p, axis=1)
    dominated = np.all(p <= c, axis=1) & np.any(p < c, axis=1)
    return np.select([dom, dominated, d > 0], [1.0, -0.5, 0.5], 0.0)


def mutation_rewards(pre: np.ndarray, children_F: np.ndarray, pop_X: np.ndarray, pop_F: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Reward of each offspring (objectives ``children_F``, bred by mutating genome ``pre[i]``) against its
    reference parent in the evaluated population ``pop_X, pop_F`` it was bred from (see module docstring)."""
    pop_F, w = np.asarray(pop_F, float), np.asarray(weights, float)
    lo, scale = pop_F.min(axis=0), np.ptp(pop_F, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    score = ((pop_F - lo) / scale) @ (w / w.sum())
    nearest = [np.lexsort((score, (pop_X != x).sum(axis=1)))[0] for x in np.asarray(pre)]
    return np.array([mutation_reward(f, pop_F[i], scale, w)[0] for f, i in zip(np.asarray(children_F, float), nearest, strict=True)])


class HybridMutation(Mutation):
    """Per individual: the controller's proposal w.p. ``reinforced_ratio``, else random mutation.

    Stateless but for the controller's policy, which it only reads: each offspring carries its
    pre-mutation genome (``pre``) and whether the controller proposed it (``reinforced``), from which the
    search loop rewards the proposals and updates the controller once they are evaluated.
    """

    def __init__(
        self,
        n_choices: np.ndarray,
        controller: MutationController,
        reinforced_ratio: float = 0.5,
        prob_per_layer: float | None = None,
        min_changes: int = 1,
    ) -> None:
        super().__init__(prob=1.0)
        self.random = RandomLayerMutation(n_choices, prob_per_layer, min_changes)
        self.n_choices = self.random.n_choices
        if controller.n_choices.tolist() != self.n_choices.tolist():
            raise ValueError("controller.n_choices differs from n_choices")
        self.controller = controller
        self.reinforced_ratio = float(reinforced_ratio)

    def do(self, problem: Any, pop: Any, inplace: bool = True, *args: Any, random_state: Rng, **kwargs: Any) -> Any:
        reinforced = random_state.random(len(pop)) < self.reinforced_ratio
        pre = np.asarray(pop.get("X"), dtype=np.int64)
        off = super().do(problem, pop, inplace, *args, random_state=random_state, reinforced=reinforced, **kwargs)
        off.set("pre", pre, "reinforced", reinforced)
        return off

    def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Rng, reinforced: np.ndarray, **kwargs: Any) -> np.ndarray:
        _check_problem(problem, self.n_choices)
        X = np.asarray(X, dtype=np.int64)
        Y = X.copy()
        rand = self.random
        Y[~reinforced] = random_layer_mutation(X[~reinforced], self.n_choices, rand.prob_per_layer, rand.min_changes, random_state)
        if reinforced.any():
            Y[reinforced] = self.controller.propose(X[reinforced], random_state)
        return Y


class GenomeDuplicateElimination(DuplicateElimination):
    """Hash-based duplicate elimination on architecture identity (genome)."""

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        seen = set() if other is None else {genome_key(x) for x in other.get("X")}
        for i, x in enumerate(pop.get("X")):
            k = genome_key(x)
            if k in seen:
                is_duplicate[i] = True
            else:
                seen.add(k)
        return is_duplicate
