"""REINFORCE for autoregressive models (DESIGN §5), as in VAN and the paper.

For samples ``x ~ q(·|c)`` at condition ``c = (T, field)`` the loss per sample is::

    ℓ = log q(x|c) + β_s · β (E_int(x) − field Σ s)         (no gradient through ℓ)
    ∇ KL ≈ mean((ℓ − b_c) / σ_c · ∇ log q(x|c))              (standardised per condition)

with ``b_c``, ``σ_c`` the mean and standard deviation of ``ℓ`` over the samples of condition ``c``
in the batch (the paper's standardisation) and ``β_s ∈ (0, 1]`` the β-annealing scale (VAN). With
``standardise=False`` the advantage is ``ℓ_i − mean_{j≠i} ℓ_j`` (leave-one-out baseline): then
the estimator is exactly unbiased for ``∇ KL(q‖p)`` (the test compares it with enumeration).

Which ``log q`` carries the gradient:

* **FO-ARM**: the model's fixed order, one forward pass (all conditionals at once).
* **Exact-marginal MAM** (``mam-tt``): its marginal, which equals ``log q(x|σ)`` along every order:
  one pass.
* **Any-order ARM**: the sample's own random order σ; the objective is the extended-space KL
  ``E_σ KL(q(·|σ)‖p)`` (an upper bound of the marginal one) and ``ℓ`` uses ``log q(x|σ)``, the
  exact path probability returned by the sampler. ``∇ log q(x|σ) = Σ_t ∇ log q(x_σt | x_σ<t)``
  needs ``N`` passes with gradients (``grad_steps=None``, exact; ``steps_per_pass`` of them per
  forward call). ``grad_steps=k`` instead draws ``k`` of the ``N`` steps uniformly without
  replacement per sample and uses ``(N/k) Σ_{t∈T_k} ∇ log q(x_σt | x_σ<t)``: an unbiased
  estimator of the same gradient at ``k`` passes (one batched forward call of ``k·B`` rows).

Memory: the exact any-order gradient keeps ``N`` states per sample for the backward pass (the
paper's O(N) argument; ~30 GB at its AO-ARM width on 20x20 with 1000 samples). ``grad_chunk=c``
evaluates the gradient's ``log q`` over chunks of ``c`` samples under activation checkpointing: a
chunk's activations are recomputed in the backward pass instead of kept, so the peak is one
chunk's, for one more forward pass. The gradient is the same (up to float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from lattherm.models.base import Model
from lattherm.sampling import log_prob, sample
from lattherm.systems.base import reduced_energy

__all__ = ["advantage", "check_grad_chunk", "reinforce_loss", "sampled_step_log_prob"]


def advantage(loss: Tensor, n_conditions: int, *, standardise: bool = True, eps: float = 1e-8) -> Tensor:
    """Per-condition advantage of ``(C·S,)`` condition-major per-sample losses (see module doc)."""
    assert not loss.requires_grad, "the REINFORCE reward must carry no gradient"
    C = int(n_conditions)
    if loss.ndim != 1 or loss.numel() % C:
        raise ValueError(f"loss must be (C·S,) condition-major with C={C}, got {tuple(loss.shape)}")
    S = loss.numel() // C
    if S < 2:
        raise ValueError(f"need at least 2 samples per condition for a baseline, got {S}")
    lc = loss.view(C, S)
    mean = lc.mean(1, keepdim=True)
    if standardise:
        return ((lc - mean) / (lc.std(1, keepdim=True, correction=0) + eps)).view(-1)
    return ((lc - mean) * S / (S - 1)).view(-1)  # ℓ_i − mean_{j≠i} ℓ_j


def sampled_step_log_prob(
    model: Model, x: Tensor, cond: Tensor, order: Tensor, *, k: int, generator: torch.Generator | None,
    grad_chunk: int | None = None,
) -> Tensor:
    """``(B,)`` unbiased single/few-step estimate ``(N/k) Σ_{t∈T_k} log q(x_σt | x_σ<t)`` of
    ``log q(x|σ)``, with gradients (``T_k``: ``k`` distinct steps, uniform, per sample)."""
    B, N = x.shape
    k = int(k)
    if not 1 <= k <= N:
        raise ValueError(f"grad_steps must be in 1..{N}, got {k}")
    steps = torch.rand(B, N, generator=generator, device=x.device).argsort(1)[:, :k]  # (B, k)
    return _in_chunks(lambda *rows: _steps_log_prob(model, *rows) * (N / k), grad_chunk, x, cond, order, steps)


def _steps_log_prob(model: Model, x: Tensor, cond: Tensor, order: Tensor, steps: Tensor) -> Tensor:
    """``(B,)`` ``Σ_{t ∈ steps} log q(x_σt | x_σ<t)`` (``steps``: ``(B, k)`` step indices), one pass."""
    B, N = x.shape
    k = steps.shape[1]
    rank = order.argsort(1)  # (B, N): step at which each site is generated
    visible = rank[:, None, :] < steps[:, :, None]  # (B, k, N)
    site = order.gather(1, steps)  # (B, k) the site generated at each drawn step
    logits = model.conditional_logits(
        x.repeat_interleave(k, 0), visible.reshape(B * k, N), cond.repeat_interleave(k, 0)
    ).view(B, k, N, -1)  # (B, k, N, q)
    lg = logits.gather(2, site[..., None, None].expand(B, k, 1, logits.shape[-1]))[:, :, 0]  # (B, k, q)
    lp = F.log_softmax(lg.double(), dim=-1).gather(2, x.gather(1, site)[..., None])[..., 0]  # (B, k)
    return lp.sum(1)


def check_grad_chunk(chunk) -> None:
    """``grad_chunk`` is ``None`` or an integer >= 1 (``ValueError`` otherwise)."""
    if chunk is not None and (isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1):
        raise ValueError(f"grad_chunk must be an integer >= 1 or None, got {chunk!r}")


def _in_chunks(fn, chunk: int | None, *rows: Tensor) -> Tensor:
    """``fn(*rows)``, a ``(B,)`` result of row-wise inputs; with ``chunk`` < B, over chunks of that
    many rows under activation checkpointing (module doc: the backward pass holds one chunk)."""
    B = rows[0].shape[0]
    if chunk is None or chunk >= B:
        return fn(*rows)
    parts = [checkpoint(fn, *(r[i : i + chunk] for r in rows), use_reentrant=False) for i in range(0, B, chunk)]
    return torch.cat(parts)


def reinforce_loss(
    model: Model,
    system,
    cond: Tensor,
    *,
    samples_per_condition: int,
    generator: torch.Generator | None,
    beta_scale: float = 1.0,
    standardise: bool = True,
    grad_steps: int | None = None,
    steps_per_pass: int = 8,
    grad_chunk: int | None = None,
) -> tuple[Tensor, dict]:
    """One REINFORCE batch: sample, score, and the surrogate whose gradient is ``∇ KL``.

    Args:
        model: an ARM (fixed- or any-order).
        system: the energy model.
        cond: ``(C, 2)`` conditions; each gets ``samples_per_condition`` samples.
        generator: seeded generator for sampling (and the drawn gradient steps).
        beta_scale: β-annealing factor ``β_s`` on the reduced energy in ``ℓ``.
        standardise: per-condition standardised advantage (paper) or leave-one-out (unbiased).
        grad_steps: any-order models only: ``None`` exact path gradient, ``k`` sampled steps.
        steps_per_pass: exact any-order gradient: steps batched per forward call.
        grad_chunk: samples per activation-checkpointed chunk of the gradient pass (module doc).

    Returns:
        ``(surrogate, stats)``: ``surrogate.backward()`` gives the gradient estimate; ``stats``
        holds detached ``log_w`` (B,) at the full β (for F_var), ``reward`` (B,), ``cond`` (B, 2),
        the samples ``x`` (B, N) and their exact ``log_q`` (B,).
    """
    check_grad_chunk(grad_chunk)
    C = cond.shape[0]
    order = "fixed" if model.fixed_order else "random"
    with torch.no_grad():
        x, log_q, order_used = sample(
            model, cond, samples_per_condition, order=order, generator=generator, return_order=True
        )
        cond_rows = cond.to(torch.float64).repeat_interleave(samples_per_condition, 0)  # (B, 2)
        red = reduced_energy(system, x, cond_rows[:, 0], cond_rows[:, 1])  # (B,) float64
    if model.fixed_order or model.exact_marginal:  # one pass (an exact marginal: every order's log q)
        log_q_grad = _in_chunks(lambda xs, cs: log_prob(model, xs, cs), grad_chunk, x, cond_rows)
    elif grad_steps is None:
        log_q_grad = _in_chunks(lambda xs, cs, os: log_prob(model, xs, cs, os, steps_per_pass=steps_per_pass),
                                grad_chunk, x, cond_rows, order_used)  # fmt: skip
    else:
        log_q_grad = sampled_step_log_prob(model, x, cond_rows, order_used, k=grad_steps, generator=generator,
                                           grad_chunk=grad_chunk)  # fmt: skip
    reward = (log_q + beta_scale * red).detach()  # ℓ
    assert not reward.requires_grad
    adv = advantage(reward, C, standardise=standardise)
    surrogate = (adv * log_q_grad).mean()
    return surrogate, {"log_w": (-red - log_q).detach(), "reward": reward, "cond": cond_rows, "x": x,
                       "log_q": log_q}
