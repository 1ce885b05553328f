"""The MAM objective (DESIGN §5; energy-based marginalisation models after Liu, Ramadge, Adams
2024): a marginal head ``f_θ(x_S) ≈ log p_θ(x_S)`` and a conditional head ``p_φ(x_j | x_S)`` on
one backbone (``model.heads``).

Per training step, for ``C`` conditions with ``S`` buffer samples each (condition-major rows):

1. **Persistent buffer** (:class:`GibbsBuffer`): filled by full ancestral sampling from ``p_φ``
   (random orders) at the start and every ``refill_every`` steps; otherwise refreshed by
   ``gibbs_sweeps`` block-Gibbs moves (default 1). One move re-samples a random block of
   ``block`` sites per sample from ``p_φ`` given the other sites, site by site in a random order
   (in-painting with :func:`lattherm.sampling.sample`, so a move is an exact block-Gibbs step of
   the conditionals). The default block is the paper's K Gibbs steps (K = 10 Ising, 4 CuAu), as
   in the reference MaM code (``censor_and_sample``: the last K sites of a fresh random order
   are erased and re-drawn): a step costs K forward passes instead of an ancestral pass's N.
   Slots follow their drifting condition.
2. **KL by REINFORCE with the marginal as surrogate**:
   ``Δ = stopgrad(f_θ(x)) + β_s β (E_int − field Σs)``, ``r`` = ``Δ`` standardised per condition,
   ``L_KL = mean(r · f_θ(x))``.
3. **Consistency**: a random order σ and index ``d`` per sample,
   ``L_cons = mean((f_θ(x_σ(<d)) + log p_φ(x_σ(d) | x_σ(<d)) − f_θ(x_σ(≤d)))²)``, gradients into
   both heads.
4. **Anchor**: ``L_anchor = mean_c f_θ(∅ | c)²``.

Total ``L = L_KL + λ (N · L_cons + L_anchor)``. All model evaluations of 2–4 go through one
forward call of ``3·B + C`` rows. ``f_θ`` is a training surrogate: the ``f_var`` logged from it is
labelled as such (``f_var_source = "marginal"``), never reported as F.

**The distilled objective** (``mam_objective: distill``, :func:`distill_loss`). The study's
objective trains the conditionals only through the consistency chain of ``N`` links from the
marginal, and its sampler is the conditionals: their errors add up along the path
(``bench_mam_diagnosis``). This one turns the roles round. Per step:

1. **The conditionals are the sampler, trained as one**: fresh ancestral samples along random
   orders with their exact ``log q(x|σ)`` (a by-product of sampling), REINFORCE on
   ``ℓ = log q + β_s β (E_int − field Σs)`` with the unbiased ``ao_grad_steps``-step estimate of
   ``∇ log q(x|σ)`` (:func:`~lattherm.training.reinforce.reinforce_loss`, as ``ao-arm-mlp``).
2. **The marginal is distilled from them** on the same samples:
   ``L_dist = mean((f_θ(x) − log q(x|σ))²)``, the consistency residuals of one random ``(σ, d)``
   per sample with the conditional detached (``L_cons``: gradients into the marginal only) and
   the anchor. ``log q`` is normalised, so ``f_θ(∅) = 0`` is the consistent constant.

Total ``L = L_RF + λ (L_dist + N · L_cons + L_anchor)``; ``f_var`` is logged from the exact
``log q`` (``f_var_source = "log_q"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lattherm.models.base import Model
from lattherm.sampling import random_orders, sample
from lattherm.systems import REGISTRY
from lattherm.systems.base import reduced_energy
from lattherm.training.reinforce import advantage, reinforce_loss

__all__ = ["GibbsBuffer", "consistency_terms", "mam_loss", "distill_loss", "default_gibbs_block"]

def default_gibbs_block(system) -> int:
    """Sites per Gibbs move by default: the system's (the paper's K: 10 Ising, 4 CuAu), at most N."""
    info = REGISTRY.get(getattr(system, "name", ""))
    return min(int(system.n_sites), info.gibbs_block if info is not None else 10)


class GibbsBuffer:
    """Persistent samples ``(C·S, N)`` (condition-major) refreshed from the conditional head."""

    def __init__(self, *, n_conditions: int, samples_per_condition: int, n_sites: int) -> None:
        self.C, self.S, self.N = int(n_conditions), int(samples_per_condition), int(n_sites)
        self.x: Tensor | None = None

    @torch.no_grad()
    def refill(self, model: Model, cond: Tensor, *, generator: torch.Generator | None) -> Tensor:
        """Replace the buffer by ancestral samples (random orders) at ``cond`` (C, 2)."""
        self.x, _ = sample(model, cond, self.S, order="random", generator=generator)
        return self.x

    @torch.no_grad()
    def gibbs(
        self, model: Model, cond: Tensor, *, sweeps: int, block: int, generator: torch.Generator | None
    ) -> Tensor:
        """``sweeps`` block-Gibbs moves of ``block`` random sites per sample (module doc)."""
        if self.x is None:
            raise RuntimeError("GibbsBuffer.gibbs before the first refill")
        B, N = self.x.shape
        if not 1 <= block <= N:
            raise ValueError(f"gibbs block must be in 1..{N}, got {block}")
        cond_rows = cond.to(torch.float64).repeat_interleave(self.S, 0)  # (B, 2)
        x = self.x
        for _ in range(int(sweeps)):
            chosen = random_orders(B, N, generator=generator, device=x.device)[:, :block]  # (B, b)
            known = torch.ones(B, N, dtype=torch.bool, device=x.device)
            known.scatter_(1, chosen, False)
            x, _ = sample(
                model,
                cond_rows,
                order="random",
                generator=generator,
                known_mask=known,
                known_values=x,
            )
        self.x = x
        return x

    def state_dict(self) -> dict:
        return {"x": None if self.x is None else self.x.to(torch.uint8).cpu()}

    def load_state_dict(self, state: dict, *, device) -> None:
        x = state["x"]
        if x is not None and tuple(x.shape) != (self.C * self.S, self.N):
            raise ValueError(f"buffer state has shape {tuple(x.shape)}, expected ({self.C * self.S}, {self.N})")
        self.x = None if x is None else x.long().to(device)


def _consistency_inputs(x: Tensor, generator) -> tuple[Tensor, Tensor, Tensor]:
    """Visible sets ``σ(<d)``, ``σ(≤d)`` (B, N) and the added site ``σ(d)`` (B,)."""
    B, N = x.shape
    order = random_orders(B, N, generator=generator, device=x.device)  # (B, N)
    d = torch.randint(0, N, (B,), generator=generator, device=x.device)  # (B,)
    rank = order.argsort(1)
    return rank < d[:, None], rank <= d[:, None], order.gather(1, d[:, None])[:, 0]


def _added_site_log_prob(logits: Tensor, x: Tensor, j: Tensor) -> Tensor:
    """``(B,)`` float64 ``log p(x_j | ·)`` of the added site ``j`` (B,) from the logits ``(B, N, q)``
    of the rows before it was added."""
    lp = F.log_softmax(logits[torch.arange(len(j)), j].double(), dim=-1)  # (B, q)
    return lp.gather(1, x.gather(1, j[:, None]))[:, 0]


def _head_terms(model: Model, x: Tensor, cond: Tensor, cond_rows: Tensor, generator) -> tuple[Tensor, ...]:
    """One forward call of ``3·B + C`` rows for the marginal terms on samples ``x`` (B, N):
    ``f(x)``, ``f(x_σ(<d))``, ``f(x_σ(≤d))`` (B,) each, ``f(∅ | c)`` (C,) and the conditional
    ``log p(x_σ(d) | x_σ(<d))`` (B,) of one random ``(σ, d)`` per sample, all float64."""
    B, N = x.shape
    C = cond.shape[0]
    vis_prev, vis_next, j = _consistency_inputs(x, generator)
    empty_x = torch.zeros(C, N, dtype=torch.long, device=x.device)
    empty_v = torch.zeros(C, N, dtype=torch.bool, device=x.device)
    logits, f = model.heads(
        torch.cat([x, x, x, empty_x]),
        torch.cat([torch.ones_like(vis_prev), vis_prev, vis_next, empty_v]),
        torch.cat([cond_rows, cond_rows, cond_rows, cond]),
    )  # (3B + C, N, q), (3B + C,)
    f = f.double()
    return f[:B], f[B : 2 * B], f[2 * B : 3 * B], f[3 * B :], _added_site_log_prob(logits[B : 2 * B], x, j)


def consistency_terms(model: Model, x: Tensor, cond_rows: Tensor, *, generator) -> Tensor:
    """``(B,)`` residuals ``f(x_σ(<d)) + log p(x_σ(d) | x_σ(<d)) − f(x_σ(≤d))`` (module doc)."""
    B, N = x.shape
    vis_prev, vis_next, j = _consistency_inputs(x, generator)
    logits, f = model.heads(torch.cat([x, x]), torch.cat([vis_prev, vis_next]), torch.cat([cond_rows, cond_rows]))
    return f[:B].double() + _added_site_log_prob(logits[:B], x, j) - f[B:].double()


def mam_loss(
    model: Model,
    system,
    x: Tensor,
    cond: Tensor,
    *,
    lam: float,
    generator: torch.Generator | None,
    beta_scale: float = 1.0,
    standardise: bool = True,
) -> tuple[Tensor, dict]:
    """The total MAM loss on buffer samples ``x`` (C·S, N) at conditions ``cond`` (C, 2).

    Returns ``(loss, stats)`` with ``stats``: detached ``kl``, ``cons``, ``anchor`` terms and
    ``log_w`` (B,) of the marginal surrogate ``−β(E − field Σs) − f_θ(x)``, ``cond`` (B, 2).
    """
    C = cond.shape[0]
    B, N = x.shape
    S = B // C
    cond = cond.to(torch.float64)
    cond_rows = cond.repeat_interleave(S, 0)  # (B, 2)
    with torch.no_grad():
        red = reduced_energy(system, x, cond_rows[:, 0], cond_rows[:, 1])  # (B,)
    f_x, f_prev, f_next, f_empty, lp = _head_terms(model, x, cond, cond_rows, generator)
    # (2) KL by REINFORCE on the marginal surrogate
    delta = (f_x.detach() + beta_scale * red).detach()
    assert not delta.requires_grad
    r = advantage(delta, C, standardise=standardise)
    l_kl = (r * f_x).mean()
    # (3) consistency, (4) anchor
    l_cons = ((f_prev + lp - f_next) ** 2).mean()
    l_anchor = (f_empty**2).mean()
    loss = l_kl + lam * (N * l_cons + l_anchor)
    stats = {
        "kl": l_kl.detach(),
        "cons": l_cons.detach(),
        "anchor": l_anchor.detach(),
        "log_w": (-red - f_x).detach(),
        "cond": cond_rows,
    }
    return loss, stats



def distill_loss(
    model: Model,
    system,
    cond: Tensor,
    *,
    samples_per_condition: int,
    lam: float,
    grad_steps: int | None,
    generator: torch.Generator | None,
    beta_scale: float = 1.0,
    standardise: bool = True,
    grad_chunk: int | None = None,
) -> tuple[Tensor, dict]:
    """The distilled MAM loss (module doc) at conditions ``cond`` (C, 2), ``samples_per_condition``
    fresh samples each. Returns ``(loss, stats)``: detached ``surrogate``, ``dist``, ``cons``,
    ``anchor`` terms, ``log_w`` (B,) of the exact ``log q`` and ``cond`` (B, 2)."""
    surrogate, st = reinforce_loss(model, system, cond, samples_per_condition=samples_per_condition,
                                   generator=generator, beta_scale=beta_scale, standardise=standardise,
                                   grad_steps=grad_steps, grad_chunk=grad_chunk)  # fmt: skip
    x, log_q, cond_rows = st["x"], st["log_q"], st["cond"]
    N = x.shape[1]
    f_x, f_prev, f_next, f_empty, lp = _head_terms(model, x, cond.to(torch.float64), cond_rows, generator)
    l_dist = ((f_x - log_q) ** 2).mean()
    l_cons = ((f_prev + lp.detach() - f_next) ** 2).mean()  # the conditional detached: into f only
    l_anchor = (f_empty**2).mean()
    loss = surrogate + lam * (l_dist + N * l_cons + l_anchor)
    stats = {"surrogate": surrogate.detach(), "dist": l_dist.detach(), "cons": l_cons.detach(),
             "anchor": l_anchor.detach(), "log_w": st["log_w"], "cond": cond_rows}  # fmt: skip
    return loss, stats
