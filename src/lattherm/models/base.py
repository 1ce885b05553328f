"""The Model protocol every architecture satisfies, and the shared condition embedding.

A model maps a partially visible configuration to the conditional distribution of every site
(DESIGN §4)::

    conditional_logits(x, visible, cond) -> (B, N, q)   # logits of x_j given the visible sites
    log_marginal(x, visible, cond)       -> (B,)        # MAMs only: surrogate log p(x_visible)

``x`` is ``(B, N)`` long with states in ``{0..q-1}``; ``visible`` is ``(B, N)`` bool; ``cond`` is
``(B, 2)`` of ``(T, field)`` in the system's units. Only ``x`` at visible sites may influence the
outputs (every architecture masks its input with ``visible`` first), and the logits are only
*used* at non-visible sites. A fixed-order model (FO-ARM, MADE) is further restricted: the logits
of the site at position ``j`` of :attr:`Model.order` depend on visible sites at positions ``< j``
only, so one pass with everything visible gives all ``N`` conditionals of a configuration.

Sampling, log-probabilities along an order and in-painting live in :mod:`lattherm.sampling`, on
top of ``conditional_logits`` alone.

Conditions are embedded by :class:`FourierCondition`: each of ``(T, field)`` is mapped linearly
to ``[-1, 1]`` over the model's condition box ``cond_box = ((T_min, T_max), (h_min, h_max))``
(a degenerate interval maps to 0) and expanded into ``[u, sin(π k u / 2), cos(π k u / 2)]`` for
``k = 1..n_freq``. One model covers one box; values outside it extrapolate.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lattherm.conditions import CondBox, check_cond_box
from lattherm.lattices import Lattice

__all__ = ["Model", "FourierCondition", "check_integers"]




def check_integers(config, *names: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming the first of ``config``'s fields ``names`` that is not an
    integer >= ``minimum`` (booleans are not integers here)."""
    for n in names:
        v = getattr(config, n)
        if isinstance(v, bool) or int(v) != v or v < minimum:
            raise ValueError(f"{type(config).__name__}.{n} must be an integer >= {minimum}, got {v!r}")


class FourierCondition(nn.Module):
    """``(B, 2)`` conditions ``(T, field)`` → ``(B, 2 (1 + 2 n_freq))`` Fourier features."""

    def __init__(self, *, cond_box: CondBox, n_freq: int) -> None:
        super().__init__()
        if int(n_freq) != n_freq or n_freq < 0:
            raise ValueError(f"n_freq must be an integer >= 0, got {n_freq!r}")
        (t0, t1), (h0, h1) = check_cond_box(cond_box)
        lo = torch.tensor([t0, h0], dtype=torch.float64)
        width = torch.tensor([t1 - t0, h1 - h0], dtype=torch.float64)
        dt = torch.get_default_dtype()  # buffers follow the model's dtype (.double(), .half())
        # a degenerate interval (one temperature, or field fixed at 0) maps every value to 0
        scale = torch.where(width > 0, 2.0 / width.clamp_min(1e-300), torch.zeros_like(width))
        freqs = math.pi / 2 * torch.arange(1, n_freq + 1, dtype=torch.float64)
        self.register_buffer("centre", (lo + width / 2).to(dt), persistent=False)
        self.register_buffer("scale", scale.to(dt), persistent=False)
        self.register_buffer("freqs", freqs.to(dt), persistent=False)
        self.out_features = 2 * (1 + 2 * int(n_freq))

    def forward(self, cond: Tensor) -> Tensor:
        u = (
            cond.to(torch.float64) - self.centre.double()
        ) * self.scale.double()  # (B, 2) in [-1, 1]
        ang = u[:, :, None] * self.freqs.double()  # (B, 2, n_freq)
        feats = torch.cat([u, ang.sin().flatten(1), ang.cos().flatten(1)], dim=1)  # (B, F)
        return feats.to(self.centre.dtype)


class Model(nn.Module):
    """Base class of every architecture (keyword-only constructor, one config dataclass).

    Subclasses set :attr:`name`, :attr:`fixed_order`, :attr:`has_marginal` and implement
    :meth:`_logits` (and :meth:`_heads` for MAMs); inputs are checked here once.

    Args:
        lattice: geometry (``coords``, ``periods``) of the system's box; ``N = lattice.n_sites``.
        n_states: states per site ``q`` (2 for Ising and CuAu).
        cond_box: ``((T_min, T_max), (field_min, field_max))`` the model is meant to cover.
        config: the architecture's config dataclass.
    """

    name: ClassVar[str] = "model"
    #: True for FO-ARMs: conditionals only along :attr:`order` (sampling.py enforces it)
    fixed_order: ClassVar[bool] = False
    #: True for MAMs: :meth:`log_marginal` is available (a surrogate, never a reported log q)
    has_marginal: ClassVar[bool] = False
    #: True for MAMs whose marginal is exact and normalised, so that ``log q(x | σ) =
    #: log_marginal(x)`` along every order σ (``mam-tt``): trained by REINFORCE on the marginal in
    #: one pass, sampled along the storage order by :meth:`fixed_order_stepper`
    exact_marginal: ClassVar[bool] = False
    #: True where the parameters do not depend on the box: the same weights define the model on
    #: any lattice of the system (size transfer, :func:`lattherm.models.transfer_model`)
    size_free: ClassVar[bool] = False
    #: how ``build_model`` passes a two-body system's ``couplings``: ``"always"`` (the model is
    #: built from them and needs such a system: ``twobo``), ``"disordered"`` (read where they vary
    #: from bond to bond: ``fo-pixelcnn``), ``None`` (never)
    uses_couplings: ClassVar[str | None] = None

    def __init__(self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: Any) -> None:
        super().__init__()
        if int(n_states) != n_states or n_states < 2:
            raise ValueError(f"n_states must be an integer >= 2, got {n_states!r}")
        self.lattice = lattice
        self.n_sites = int(lattice.n_sites)
        self.n_states = int(n_states)
        self.cond_box = check_cond_box(cond_box)
        self.config = config
        self.check_config(config, tuple(lattice.periods))
        # the fixed generation order of FO-ARMs: the lattice's storage order; None otherwise
        if self.fixed_order:
            self.register_buffer("order", torch.arange(self.n_sites), persistent=False)
        else:
            self.order: Tensor | None = None

    @classmethod
    def check_config(cls, config: Any, periods: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if ``config`` cannot build this architecture on a lattice of these
        periods (what the config schema cannot say alone); the constructor calls it too."""

    @property
    def any_order(self) -> bool:
        return not self.fixed_order

    def spec(self) -> dict:
        """Everything needed to rebuild the model (besides the system): for checkpoints."""
        return {
            "name": self.name,
            "config": asdict(self.config),
            "cond_box": [list(b) for b in self.cond_box],
        }

    # ------------------------------------------------------------------ inputs
    def _check(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.ndim != 2 or x.shape[1] != self.n_sites:
            raise ValueError(
                f"{self.name}: x must have shape (B, {self.n_sites}), got {tuple(x.shape)}"
            )
        B = x.shape[0]
        if visible.dtype != torch.bool:
            raise ValueError(f"{self.name}: visible must be a bool tensor, got {visible.dtype}")
        visible = visible.expand(B, self.n_sites) if visible.ndim == 1 else visible
        if visible.shape != x.shape:
            raise ValueError(
                f"{self.name}: visible must have shape {tuple(x.shape)}, got {tuple(visible.shape)}"
            )
        cond = torch.as_tensor(cond, device=x.device)
        if cond.ndim == 1:
            cond = cond.expand(B, 2)
        if cond.shape != (B, 2):
            raise ValueError(
                f"{self.name}: cond must have shape ({B}, 2) of (T, field), got {tuple(cond.shape)}"
            )
        return x.long(), visible, cond

    def masked_onehot(self, x: Tensor, visible: Tensor) -> Tensor:
        """``(B, N, q + 1)``: one-hot of ``x`` times ``visible``, then the visible flag."""
        oh = nn.functional.one_hot(x, self.n_states).to(self.dtype) * visible[..., None]
        return torch.cat([oh, visible[..., None].to(self.dtype)], dim=-1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ------------------------------------------------------------------ public API
    def conditional_logits(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        """``(B, N, q)`` logits of every site given the visible sites (see module docstring)."""
        return self._logits(*self._check(x, visible, cond))

    def log_marginal(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        """``(B,)`` surrogate ``log p(x_visible)`` (MAMs only; never a reported log q)."""
        if not self.has_marginal:
            raise NotImplementedError(f"{self.name} has no marginal head (only MAMs do)")
        return self._heads(*self._check(x, visible, cond))[1]

    def heads(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """MAMs: ``(logits (B, N, q), log_marginal (B,))`` from one backbone pass."""
        if not self.has_marginal:
            raise NotImplementedError(f"{self.name} has no marginal head (only MAMs do)")
        return self._heads(*self._check(x, visible, cond))

    def fixed_order_stepper(self, cond: Tensor):
        """FO-ARMs, and models with an exact marginal along the storage order, may return an
        incremental sampler for ``(B, 2)`` conditions (else None).

        The object has ``logits(t) -> (B, q)``, the logits of the site at position ``t`` of
        :attr:`order` (the storage order for a model without one) given the sites observed so
        far, and ``observe(t, a)`` recording state ``a`` (B,) at that position; positions are
        visited in order ``0..N-1``. The logits must equal those of :meth:`conditional_logits`
        with positions ``< t`` visible (up to rounding); :func:`lattherm.sampling.sample` uses it
        when nothing is in-painted, so the ``N`` sampling steps cost about one full forward pass
        instead of ``N``.
        """
        return None

    def any_order_stepper(self, x: Tensor, visible: Tensor, cond: Tensor):
        """Any-order models may return an incremental sampler (else None).

        Started from ``(B, N)`` states ``x`` with ``visible`` sites observed (in-painting) and
        ``(B, 2)`` conditions. ``logits(rows, site) -> (b, q)`` gives the logits of ``site`` (b,)
        for the batch rows ``rows`` (b,) given what they have observed; ``observe(rows, site, a)``
        records state ``a`` (b,) there. The logits must equal :meth:`conditional_logits`'s (up to
        rounding); :func:`lattherm.sampling.sample` then skips recomputing what does not change
        between steps (e.g. the input layer, the logits of the other sites).
        """
        return None

    def any_order_path_logits(self, x: Tensor, known: Tensor, order: Tensor, cond: Tensor) -> Tensor | None:
        """Any-order models may return every step's conditional in one batched computation (else None).

        ``order`` (B, N) lists the unknown sites first (those not in ``known``). The result is
        ``(B, N, q)``: row ``t`` holds the logits of site ``order[:, t]`` given the ``known`` sites
        and ``order[:, :t]``, equal to :meth:`conditional_logits`'s (up to rounding), with
        gradients. Rows ``t`` at known sites are unspecified (the caller masks them).
        :func:`lattherm.sampling.log_prob` uses it instead of one pass per step.
        """
        return None

    def _logits(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        if self.has_marginal:
            return self._heads(x, visible, cond)[0]
        raise NotImplementedError

    def _heads(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        return self.conditional_logits(x, visible, cond)
