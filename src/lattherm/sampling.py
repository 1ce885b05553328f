"""Ancestral sampling and exact path log-probabilities, written once on ``conditional_logits``.

* :func:`sample` draws configurations site by site along an order and returns the exact
  log-probability of the path: ``log_q = Σ_t log_softmax(logits)[x_{σ(t)}]`` of the conditionals
  actually used (float64 accumulation). For a random order σ this is ``log q(x | σ)``: importance
  weights ``p(x) / q(x | σ)`` with σ drawn uniformly stay unbiased (extended space, DESIGN §4).
  A MAM's ``log_marginal`` is never used here.
* :func:`log_prob` evaluates the same sum for given configurations along a given order: one
  forward pass for a fixed-order model (all conditionals at once), otherwise one pass per site
  (``steps_per_pass`` of them batched together), unless the model gives every step's conditional
  in one computation (``any_order_path_logits``: the masked-input MLPs' cumulative first layer, the
  any-order Transformer's causal pass; a model with ``one_pass_log_prob`` uses it also without
  gradients, instead of its incremental stepper); a model with an exact marginal
  (``exact_marginal``) gives every order's path as its marginal, ``log q(x) − log q(x_known)``.
  Gradients flow unless the caller disables them.
* **In-painting**: ``known_mask`` sites keep ``known_values``; the other sites are sampled (in
  the order's relative order) conditioned on them, and ``log_q`` covers the sampled sites only.
* **Symmetrised** (binary states, Ising; DESIGN §3): ``q_sym(x|T,h) = ½[q(x|T,h) + q(x̄|T,−h)]``,
  sampled by drawing from ``q(·|T, ±h)`` with probability ½ and flipping the ``−h`` draws; its
  log-probability costs one extra :func:`log_prob` pass for the other branch (same order).

* **Order mixture** (any-order models, ``n_orders = M > 1``): ``M`` independent orders
  ``σ_1..σ_M`` per sample (uniform, or from the model's own order family) and
  ``q_M(x) = (1/M) Σ_m q(x | σ_m)``, a mixture of normalised distributions and so itself exactly
  normalised for the drawn orders; sampled by drawing along one of them chosen uniformly; its
  log-probability costs ``M`` path evaluations. Combined with ``symmetrised`` it is the
  ``2M``-component mixture over orders and the global flip. The importance weights ``p / q_M``
  lose the order-to-order scatter of ``log q(x | σ)`` that a single path probability carries
  (``M → ∞``: the order-averaged ``q``), at ``M`` times the cost.

Orders: ``"fixed"`` (the model's order for FO-ARMs, the lattice storage order otherwise),
``"random"`` (an independent uniform permutation per sample; a model with its own order family,
``model.draw_orders``, draws from that: :func:`model_orders`), or a LongTensor ``(N,)`` / ``(B, N)``
of permutations (``order[b, t]`` is the site generated at step t); :func:`log_prob` also takes
``(B, M, N)``: the order mixture. FO-ARMs accept their own order only. Conditions ``cond`` are
``(T, field)`` per sample; everything is batched over conditions.
Reproducible given a ``torch.Generator`` (on the model's device).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lattherm.conditions import expand_conditions
from lattherm.models.base import Model

__all__ = ["sample", "log_prob", "random_orders", "model_orders"]

LN2 = math.log(2.0)


def _device(model: Model) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def random_orders(
    n: int, n_sites: int, *, generator: torch.Generator | None = None, device=None
) -> Tensor:
    """``(n, N)`` independent uniform random permutations of the sites."""
    return torch.rand(n, n_sites, generator=generator, device=device).argsort(dim=1)


def model_orders(model: Model, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
    """``(n, N)`` orders of ``order="random"`` for an any-order model: its own order family where it
    has one (``model.draw_orders``, e.g. the any-order Transformer's ``orders``), else uniform."""
    draw = getattr(model, "draw_orders", None)
    if draw is not None:
        return draw(n, generator=generator, device=device)
    return random_orders(n, model.n_sites, generator=generator, device=device)


def _resolve_order(model: Model, order, B: int, generator, device) -> Tensor:
    N = model.n_sites
    if isinstance(order, str):
        if order == "fixed":
            base = model.order if model.fixed_order else torch.arange(N, device=device)
            return base.to(device).expand(B, N)
        if order == "random":
            if model.fixed_order:
                raise ValueError(
                    f"{model.name} is a fixed-order model: use order='fixed', not 'random'"
                )
            return model_orders(model, B, generator=generator, device=device)
        raise ValueError(
            f"order must be 'fixed', 'random' or a LongTensor of permutations, got {order!r}"
        )
    order = torch.as_tensor(order, device=device)
    if order.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"an explicit order must be an integer tensor, got {order.dtype}")
    order = order.long()
    order = order.expand(B, N) if order.ndim == 1 else order
    if order.shape != (B, N):
        raise ValueError(f"order must have shape ({N},) or ({B}, {N}), got {tuple(order.shape)}")
    if not torch.equal(order.sort(dim=1).values, torch.arange(N, device=device).expand(B, N)):
        raise ValueError("every row of order must be a permutation of the sites 0..N-1")
    if model.fixed_order and not torch.equal(order, model.order.to(device).expand(B, N)):
        raise ValueError(
            f"{model.name} is a fixed-order model: it only generates along its own order"
        )
    return order


def _resolve_known(known_mask, known_values, B: int, N: int, device) -> tuple[Tensor, Tensor]:
    if known_mask is None:
        if known_values is not None:
            raise ValueError("known_values given without known_mask")
        z = torch.zeros(B, N, dtype=torch.bool, device=device)
        return z, torch.zeros(B, N, dtype=torch.long, device=device)
    known = torch.as_tensor(known_mask, device=device)
    if known.dtype != torch.bool:
        raise ValueError(f"known_mask must be a bool tensor, got {known.dtype}")
    known = known.expand(B, N) if known.ndim == 1 else known
    if known_values is None:
        raise ValueError("known_mask given without known_values")
    values = torch.as_tensor(known_values, device=device).long()
    values = values.expand(B, N) if values.ndim == 1 else values
    if known.shape != (B, N) or values.shape != (B, N):
        raise ValueError(
            f"known_mask and known_values must have shape ({N},) or ({B}, {N}), got "
            f"{tuple(known.shape)} and {tuple(values.shape)}"
        )
    return known, torch.where(known, values, 0)


def _unknown_first(order: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
    """The order with unknown sites first (their relative order kept), and their count per row."""
    k_in_order = known.gather(1, order).to(torch.int8)  # (B, N)
    return order.gather(1, k_in_order.argsort(dim=1, stable=True)), (~known).sum(1)


def _check_states(model: Model, x: Tensor) -> Tensor:
    if x.ndim != 2 or x.shape[1] != model.n_sites:
        raise ValueError(f"x must have shape (B, {model.n_sites}), got {tuple(x.shape)}")
    x = x.long()
    if x.numel() and (x.min() < 0 or x.max() >= model.n_states):
        raise ValueError(f"site states must be in 0..{model.n_states - 1}")
    return x


def _draw(logits: Tensor, generator) -> tuple[Tensor, Tensor]:
    """Gumbel-max draw from ``(b, q)`` logits: ``(state (b,), its float64 log-probability)``."""
    logp = F.log_softmax(logits.double(), dim=-1)  # (b, q)
    u = torch.rand(logp.shape, generator=generator, dtype=torch.float64, device=logp.device)
    a = (logp - torch.log(-torch.log(u))).argmax(dim=-1)  # exact, never a zero-probability state
    return a, logp.gather(1, a[:, None])[:, 0]


@torch.no_grad()
def _ancestral_stepper(stepper, order: Tensor, x: Tensor, generator) -> tuple[Tensor, Tensor]:
    """Fixed order, nothing known: the model's incremental stepper gives each conditional."""
    log_q = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for t, site in enumerate(order.tolist()):
        a, lp = _draw(stepper.logits(t), generator)
        x[:, site] = a
        stepper.observe(t, a)
        log_q += lp
    return x, log_q


@torch.no_grad()
def _ancestral(
    model: Model, cond: Tensor, order: Tensor, known: Tensor, values: Tensor, generator
) -> tuple[Tensor, Tensor]:
    B, N = order.shape
    stepper = None
    if B and not known.any():
        if model.fixed_order:
            stepper = model.fixed_order_stepper(cond)
        elif model.exact_marginal and bool((order == torch.arange(N, device=order.device)).all()):
            stepper = model.fixed_order_stepper(cond)  # every order draws the same q: the storage order's
    if stepper is not None:  # incremental fixed-order path: same conditionals, ~1 pass of cost
        return _ancestral_stepper(stepper, order[0], values.clone(), generator)
    order, n_unknown = _unknown_first(order, known)
    x, visible = values.clone(), known.clone()  # (B, N)
    log_q = torch.zeros(B, dtype=torch.float64, device=x.device)
    stepper = model.any_order_stepper(x, visible, cond) if model.any_order and B else None
    all_rows = torch.arange(B, device=x.device)
    for t in range(int(n_unknown.max()) if B else 0):
        full = bool((t < n_unknown).all())
        rows = all_rows if full else torch.nonzero(t < n_unknown)[:, 0]  # (b,) rows still sampling
        site = order[rows, t]  # (b,)
        if stepper is not None:  # incremental: only what changed since the last step
            lg = stepper.logits(None if full else rows, site)  # (b, q)
        else:
            lg = model.conditional_logits(x[rows], visible[rows], cond[rows])[all_rows[: len(rows)], site]
        a, lp = _draw(lg, generator)  # Gumbel-max: exact draw, never a zero-probability state
        x[rows, site] = a
        visible[rows, site] = True
        log_q[rows] += lp
        if stepper is not None:
            stepper.observe(None if full else rows, site, a)
    return x, log_q


def _teacher_forced(stepper, x: Tensor, order: Tensor, n_unknown: Tensor) -> Tensor:
    """``log q(x | order)`` through an any-order stepper, observing ``x`` step by step."""
    B = x.shape[0]
    total = torch.zeros(B, dtype=torch.float64, device=x.device)
    all_rows = torch.arange(B, device=x.device)
    for t in range(int(n_unknown.max())):
        full = bool((t < n_unknown).all())
        rows = all_rows if full else torch.nonzero(t < n_unknown)[:, 0]
        site = order[rows, t]
        a = x[rows, site]
        lp = F.log_softmax(stepper.logits(None if full else rows, site).double(), dim=-1)
        total[rows] += lp.gather(1, a[:, None])[:, 0]
        stepper.observe(None if full else rows, site, a)
    return total


def log_prob(
    model: Model,
    x: Tensor,
    cond,
    order="fixed",
    *,
    known_mask: Tensor | None = None,
    symmetrised: bool = False,
    steps_per_pass: int = 1,
    stepwise: bool = False,
) -> Tensor:
    """``(B,)`` float64 path log-probability of ``x`` along ``order`` (see module docstring).

    ``cond`` is ``(B, 2)`` (or ``(2,)``, broadcast); ``order`` as in :func:`sample` (for
    ``"random"`` the draw is unseeded: pass the order used by :func:`sample` instead). With
    ``known_mask``, the sum runs over the other sites only (in-painting). ``steps_per_pass``
    batches that many steps of an any-order model into one forward pass (memory for speed).
    Under ``torch.no_grad()`` an any-order model's incremental stepper is used when it has one.
    ``stepwise`` sums the conditionals of ``conditional_logits`` step by step and takes none of the
    shortcuts (an exact marginal, a stepper, path logits, a fixed order's one pass): their check,
    for models whose conditionals read the visible set alone (not the any-order Transformer's,
    which read the order of the prefix too).
    """
    device = _device(model)
    x = _check_states(model, torch.as_tensor(x, device=device))
    B, N = x.shape
    cond = torch.as_tensor(cond, dtype=torch.float64, device=device)
    if cond.ndim == 1 or (cond.ndim == 2 and cond.shape[0] == 1):
        cond = cond.reshape(1, -1).expand(B, -1)
    cond = expand_conditions(cond, device=device)
    if cond.shape[0] != B:
        raise ValueError(f"cond must have {B} rows (one per configuration), got {cond.shape[0]}")
    if isinstance(order, Tensor) and order.ndim == 3:  # the mixture over M orders per sample
        if order.shape[0] != B or order.shape[1] < 1:
            raise ValueError(f"a mixture of orders must have shape ({B}, M, {N}), got {tuple(order.shape)}")
        parts = [
            log_prob(model, x, cond, order[:, m], known_mask=known_mask, symmetrised=symmetrised,
                     steps_per_pass=steps_per_pass, stepwise=stepwise)
            for m in range(order.shape[1])
        ]  # fmt: skip
        return torch.logsumexp(torch.stack(parts), 0) - math.log(order.shape[1])
    if symmetrised:
        if model.n_states != 2 or known_mask is not None:
            raise ValueError("symmetrised log_prob needs binary states and no known_mask")
        if isinstance(order, str) and order == "random":
            raise ValueError(
                "symmetrised log_prob with a random order: pass the order explicitly "
                "(the same for both branches)"
            )
        flipped = cond * torch.tensor([1.0, -1.0], dtype=torch.float64, device=device)
        a = log_prob(model, x, cond, order, steps_per_pass=steps_per_pass, stepwise=stepwise)
        b = log_prob(model, 1 - x, flipped, order, steps_per_pass=steps_per_pass, stepwise=stepwise)
        return torch.logaddexp(a, b) - LN2
    order = _resolve_order(model, order, B, None, device)
    known = (
        torch.zeros(B, N, dtype=torch.bool, device=device)
        if known_mask is None
        else _resolve_known(known_mask, x, B, N, device)[0]
    )
    if model.exact_marginal and not stepwise:  # every order's path: log q(x) − log q(x_known)
        lm = model.log_marginal(x, torch.ones_like(known), cond).double()
        return lm - model.log_marginal(x, known, cond).double() if known.any() else lm
    if model.fixed_order and not stepwise:  # one pass gives every q(x_j | x_<j)
        logits = model.conditional_logits(x, torch.ones_like(known), cond)  # (B, N, q)
        lp = F.log_softmax(logits.double(), dim=-1).gather(2, x[..., None])[..., 0]  # (B, N)
        return torch.where(known, 0.0, lp).sum(1)
    if int(steps_per_pass) != steps_per_pass or steps_per_pass < 1:
        raise ValueError(f"steps_per_pass must be a positive integer, got {steps_per_pass!r}")
    order, n_unknown = _unknown_first(order, known)
    one_pass = getattr(model, "one_pass_log_prob", False)  # a causal model: one pass beats N cached steps
    shortcut = B and not stepwise
    stepper = None if torch.is_grad_enabled() or not shortcut or one_pass else model.any_order_stepper(x, known, cond)
    if stepper is not None:  # no gradient asked for: teacher-forced incremental pass
        return _teacher_forced(stepper, x, order, n_unknown)
    path = model.any_order_path_logits(x, known, order, cond) if shortcut else None
    if path is not None:  # every step's conditional from one batched computation
        lp = F.log_softmax(path.double(), dim=-1).gather(2, x.gather(1, order)[..., None])[..., 0]  # (B, N)
        steps = torch.arange(N, device=device)
        return torch.where(steps[None] < n_unknown[:, None], lp, 0.0).sum(1)
    rank = order.argsort(dim=1)  # (B, N): step at which each site is generated
    total = torch.zeros(B, dtype=torch.float64, device=device)
    n_steps = int(n_unknown.max()) if B else 0
    for t0 in range(0, n_steps, int(steps_per_pass)):
        ts = torch.arange(t0, min(t0 + int(steps_per_pass), n_steps), device=device)  # (c,)
        c = len(ts)
        visible = known[None] | (rank[None] < ts[:, None, None])  # (c, B, N)
        logits = model.conditional_logits(
            x.repeat(c, 1), visible.reshape(c * B, N), cond.repeat(c, 1)
        ).view(c, B, N, -1)  # (c, B, N, q)
        site = order[:, ts].T  # (c, B)
        lg = logits.gather(2, site[..., None, None].expand(c, B, 1, logits.shape[-1]))[
            :, :, 0
        ]  # (c, B, q)
        lp = F.log_softmax(lg.double(), dim=-1).gather(2, x.gather(1, site.T).T[..., None])[
            ..., 0
        ]  # (c, B)
        total = total + torch.where(ts[:, None] < n_unknown[None], lp, 0.0).sum(0)
    return total


@torch.no_grad()
def sample(
    model: Model,
    cond,
    n: int | None = None,
    *,
    order="random",
    generator: torch.Generator | None = None,
    known_mask: Tensor | None = None,
    known_values: Tensor | None = None,
    symmetrised: bool = False,
    batch_size: int | None = None,
    return_order: bool = False,
    n_orders: int = 1,
):
    """Draw configurations and their exact path log-probabilities.

    Args:
        model: any :class:`~lattherm.models.base.Model`.
        cond: ``(T, field)``: ``(2,)`` with ``n``; ``(C, 2)`` with ``n`` (each condition n times,
            condition-major); or ``(B, 2)`` one sample per row (``n`` None).
        order: ``"random"`` (default; FO-ARMs need ``"fixed"``), ``"fixed"``, or permutations
            ``(N,)`` / ``(B, N)``.
        generator: a seeded ``torch.Generator`` for reproducible draws.
        known_mask, known_values: in-painting: ``(N,)`` or ``(B, N)``; known sites are kept.
        symmetrised: sample the global-flip mixture ``q_sym`` (binary states, no in-painting).
        batch_size: at most this many samples per forward pass (results depend on it only
            through the generator's stream).
        return_order: also return the ``(B, N)`` orders used (for :func:`log_prob`); with
            ``n_orders > 1`` the ``(B, M, N)`` orders of the mixture.
        n_orders: ``M``: sample the mixture over ``M`` random orders per sample (module doc;
            any-order models, ``order="random"``, no in-painting); ``log_q`` is the mixture's.

    Returns:
        ``x`` (B, N) long, ``log_q`` (B,) float64 [, ``order`` (B, N) or (B, M, N) long].
    """
    device = _device(model)
    cond = expand_conditions(cond, n, device=device)
    B, N = cond.shape[0], model.n_sites
    if isinstance(n_orders, bool) or int(n_orders) != n_orders or n_orders < 1:
        raise ValueError(f"n_orders must be a positive integer, got {n_orders!r}")
    if n_orders > 1:
        if model.fixed_order:
            raise ValueError(f"{model.name} is a fixed-order model: a mixture of orders needs an any-order model")
        if not (isinstance(order, str) and order == "random") or known_mask is not None:
            raise ValueError("n_orders > 1 draws its own random orders: use order='random' and no known_mask")
        orders = model_orders(model, B * n_orders, generator=generator, device=device).view(B, n_orders, N)
        pick = torch.randint(0, n_orders, (B,), generator=generator, device=device)  # (B,) the order drawn along
        x, _ = sample(model, cond, order=orders[torch.arange(B, device=device), pick], generator=generator,
                      symmetrised=symmetrised, batch_size=batch_size)  # fmt: skip
        step = B if batch_size is None else int(batch_size)
        log_q = torch.cat(
            [log_prob(model, x[s : s + step], cond[s : s + step], orders[s : s + step], symmetrised=symmetrised)
             for s in range(0, B, step)]
        ) if B else torch.zeros(0, dtype=torch.float64, device=device)  # fmt: skip
        return (x, log_q, orders) if return_order else (x, log_q)
    order = _resolve_order(model, order, B, generator, device)
    known, values = _resolve_known(known_mask, known_values, B, N, device)
    if symmetrised:
        if model.n_states != 2:
            raise ValueError(
                f"symmetrised sampling flips binary states; the model has {model.n_states}"
            )
        if known_mask is not None:
            raise ValueError(
                "symmetrised sampling cannot keep known sites (the flip would change them)"
            )
        flip = torch.rand(B, generator=generator, device=device) < 0.5  # (B,) the −h branch
        cond = torch.where(
            flip[:, None],
            cond * torch.tensor([1.0, -1.0], dtype=torch.float64, device=device),
            cond,
        )
    step = B if batch_size is None else int(batch_size)
    if step < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    xs, lqs = [], []
    for s in range(0, B, step):
        sl = slice(s, s + step)
        x, lq = _ancestral(model, cond[sl], order[sl], known[sl], values[sl], generator)
        if symmetrised:  # other branch: log q(x̄_branch | T, −h_branch), same order
            other = cond[sl] * torch.tensor([1.0, -1.0], dtype=torch.float64, device=device)
            lq = torch.logaddexp(lq, log_prob(model, 1 - x, other, order[sl])) - LN2
            x = torch.where(flip[sl, None], 1 - x, x)
        xs.append(x)
        lqs.append(lq)
    x = torch.cat(xs) if xs else torch.zeros(0, N, dtype=torch.long, device=device)
    log_q = torch.cat(lqs) if lqs else torch.zeros(0, dtype=torch.float64, device=device)
    return (x, log_q, order) if return_order else (x, log_q)
