"""MLP samplers: the fixed-order MADE (VAN baseline), the any-order MLP, and the MLP MAM.

* ``fo-arm-mlp`` (:class:`MADE`): masked MLP in the lattice's storage order (raster order for
  the square lattice), as in VAN: hidden units are ``N x channels``, unit ``(j, c)`` sees input
  sites at positions ``< j`` (first layer, exclusive mask), hidden units at positions ``<= j``
  (residual hidden layers and the output layer, inclusive masks). The condition is added to every
  hidden unit, so the first site's conditional depends on ``(T, field)`` too. No normalisation
  layer (it would mix positions and break the masks). One pass with everything visible gives the
  ``N`` conditionals ``q(x_j | x_<j)``.
* ``ao-arm-mlp`` (:class:`AnyOrderMLP`): input per site ``[onehot(x) * visible, visible]``,
  flattened, plus Fourier features of the condition; residual pre-norm MLP; ``N x q`` logits.
  Paper size: 3 layers of width 2048.
* ``mam-mlp`` (:class:`MAMMLP`): the same backbone with a conditional head (``N x q`` logits) and
  a marginal head (scalar surrogate ``log p(x_visible)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lattherm.conditions import CondBox
from lattherm.lattices import Lattice
from lattherm.models.base import FourierCondition, Model, check_integers

__all__ = ["MADEConfig", "MLPConfig", "MADE", "AnyOrderMLP", "MAMMLP"]


@dataclass
class MADEConfig:
    channels: int = 16  # hidden units per site: hidden width N * channels (VAN: net_width)
    n_hidden: int = 2  # residual masked hidden layers between the input and output layers
    cond_width: int = 64  # width of the condition MLP that feeds every hidden unit
    n_freq: int = 8  # Fourier frequencies per condition variable


@dataclass
class MLPConfig:
    width: int = 2048  # hidden units (paper: 2048)
    n_layers: int = 3  # hidden layers of that width: input layer + (n_layers - 1) residual blocks
    n_freq: int = 8  # Fourier frequencies per condition variable


def _site_mask(n_sites: int, c_out: int, c_in: int, *, strict: bool) -> Tensor:
    """``(N c_out, N c_in)`` block mask: output position j sees input positions i < j (or <=)."""
    pos = torch.arange(n_sites)
    tri = (
        (pos[None, :] < pos[:, None]) if strict else (pos[None, :] <= pos[:, None])
    )  # (N, N) [j, i]
    return torch.kron(tri.to(torch.get_default_dtype()), torch.ones(c_out, c_in))


class MADE(Model):
    """Fixed-order masked MLP (``fo-arm-mlp``); see the module docstring."""

    name = "fo-arm-mlp"
    fixed_order = True

    def __init__(
        self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: MADEConfig
    ) -> None:
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        check_integers(config, "channels", "cond_width")
        check_integers(config, "n_hidden", minimum=0)
        N, q, C = self.n_sites, self.n_states, config.channels
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        self.cond_mlp = nn.Sequential(
            nn.Linear(self.cond_embed.out_features, config.cond_width),
            nn.GELU(),
            nn.Linear(config.cond_width, N * C),
        )
        self.inp = nn.Linear(N * q, N * C)
        self.hidden = nn.ModuleList(nn.Linear(N * C, N * C) for _ in range(config.n_hidden))
        self.out = nn.Linear(N * C, N * q)
        # masks are rebuilt from the geometry, not stored in checkpoints
        self.register_buffer("mask_in", _site_mask(N, C, q, strict=True), persistent=False)
        self.register_buffer("mask_hidden", _site_mask(N, C, C, strict=False), persistent=False)
        self.register_buffer("mask_out", _site_mask(N, q, C, strict=False), persistent=False)

    def _logits(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        B, N = x.shape
        inp = (F.one_hot(x, self.n_states).to(self.dtype) * visible[..., None]).reshape(
            B, -1
        )  # (B, N q)
        h = F.linear(inp, self.inp.weight * self.mask_in, self.inp.bias)  # (B, N C)
        h = h + self.cond_mlp(self.cond_embed(cond))
        for layer in self.hidden:
            h = h + F.linear(F.gelu(h), layer.weight * self.mask_hidden, layer.bias)
        out = F.linear(F.gelu(h), self.out.weight * self.mask_out, self.out.bias)  # (B, N q)
        return out.view(B, N, self.n_states)


    @torch.no_grad()
    def fixed_order_stepper(self, cond: Tensor) -> _MADEStepper:
        cond = torch.as_tensor(cond, device=self.mask_in.device)
        return _MADEStepper(self, cond.reshape(-1, 2))


class _MADEStepper:
    """Incremental MADE sampling (VAN's fast path): the first layer's pre-activations of all
    positions are updated by one column block per observed site, and the residual/output layers
    are evaluated for the current position only (their inputs at positions ``<= t`` are final).
    ``N`` steps cost ``O(B N^2 C^2)`` in all, like one forward pass."""

    def __init__(self, made: MADE, cond: Tensor) -> None:
        N, q, C = made.n_sites, made.n_states, made.config.channels
        self.N, self.q, self.C = N, q, C
        B = cond.shape[0]
        w_in = (made.inp.weight * made.mask_in).view(N, C, N, q)  # [j, c, i, s]
        self.w_in = w_in.permute(2, 3, 0, 1).reshape(N, q, N * C)  # [i, s, (j c)]
        # layer-0 pre-activations (B, N C): bias + condition; sites add their column blocks
        self.h0 = (made.inp.bias + made.cond_mlp(made.cond_embed(cond))).expand(B, N * C).clone()
        self.hidden = [(layer.weight * made.mask_hidden, layer.bias) for layer in made.hidden]
        self.w_out = (made.out.weight * made.mask_out, made.out.bias)
        # GELU of every layer's units at the positions already computed: (B, N C) each
        dt = self.h0.dtype
        self.acts = [torch.zeros(B, N * C, dtype=dt, device=cond.device) for _ in range(len(self.hidden) + 1)]

    def logits(self, t: int) -> Tensor:
        C, q = self.C, self.q
        lo, hi = t * C, (t + 1) * C
        h = self.h0[:, lo:hi]  # (B, C) position t of layer 0 (inputs < t all added)
        self.acts[0][:, lo:hi] = F.gelu(h)
        for k, (w, b) in enumerate(self.hidden):
            h = h + F.linear(self.acts[k][:, :hi], w[lo:hi, :hi], b[lo:hi])
            self.acts[k + 1][:, lo:hi] = F.gelu(h)
        w, b = self.w_out
        return F.linear(self.acts[-1][:, :hi], w[t * q : (t + 1) * q, :hi], b[t * q : (t + 1) * q])

    def observe(self, t: int, a: Tensor) -> None:
        start = (t + 1) * self.C  # only later positions see site t
        if start < self.h0.shape[1]:
            onehot = F.one_hot(a, self.q).to(self.h0.dtype)  # (B, q)
            self.h0[:, start:].addmm_(onehot, self.w_in[t, :, start:])


class _MaskedInputMLP(nn.Module):
    """Backbone of the any-order MLPs: ``[onehot * visible, visible]`` + condition → ``(B, W)``."""

    def __init__(
        self, *, n_sites: int, n_states: int, cond_box: CondBox, config: MLPConfig
    ) -> None:
        super().__init__()
        check_integers(config, "width", "n_layers")
        W = config.width
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        self.inp = nn.Linear(n_sites * (n_states + 1), W)
        self.cond_proj = nn.Linear(self.cond_embed.out_features, W)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(W), nn.Linear(W, W), nn.GELU())
            for _ in range(config.n_layers - 1)
        )
        self.norm = nn.LayerNorm(W)

    def first_layer(self, inp: Tensor, cond: Tensor) -> Tensor:
        return self.inp(inp.flatten(1)) + self.cond_proj(self.cond_embed(cond))  # (B, W)

    def rest(self, h: Tensor) -> Tensor:
        for block in self.blocks:
            h = h + block(h)
        return F.gelu(self.norm(h))

    def forward(self, inp: Tensor, cond: Tensor) -> Tensor:
        return self.rest(self.first_layer(inp, cond))


class _AnyOrderMLPStepper:
    """Incremental any-order sampling for the masked-input MLPs: the first layer is linear in
    ``[onehot * visible, visible]``, so observing site ``i`` in state ``a`` adds one precomputed
    row (its state column plus its visible flag) to the pre-activations, instead of a full
    ``N (q + 1) x W`` product, and only the drawn site's ``q`` rows of the output head are
    evaluated (instead of ``N q``). Rows are picked with ``index_select`` on flat tables."""

    def __init__(self, model: Model, head: nn.Linear, x: Tensor, visible: Tensor, cond: Tensor) -> None:
        N, q = model.n_sites, model.n_states
        self.q = q
        self.backbone = model.backbone
        self.h0 = self.backbone.first_layer(model.masked_onehot(x, visible), cond)  # (B, W)
        w_in = self.backbone.inp.weight.T.reshape(N, q + 1, -1)  # [site, channel, W]
        self.w_obs = (w_in[:, :q] + w_in[:, q:]).reshape(N * q, -1)  # [(site, state), W]
        self.w_head = head.weight.view(N, -1)  # [site, (state, W)]
        self.b_head = head.bias.view(N, q)

    def logits(self, rows: Tensor | None, site: Tensor) -> Tensor:
        h0 = self.h0 if rows is None else self.h0[rows]
        h = self.backbone.rest(h0)  # (b, W)
        w = self.w_head.index_select(0, site).view(site.shape[0], self.q, h.shape[1])  # (b, q, W)
        return torch.bmm(w, h[:, :, None])[..., 0] + self.b_head.index_select(0, site)  # (b, q)

    def observe(self, rows: Tensor | None, site: Tensor, a: Tensor) -> None:
        add = self.w_obs.index_select(0, site * self.q + a)  # (b, W): state column + visible flag
        if rows is None:
            self.h0 += add
        else:
            self.h0.index_add_(0, rows, add)


def _path_logits(model: Model, head: nn.Linear, x: Tensor, known: Tensor, order: Tensor, cond: Tensor) -> Tensor:
    """Every step's conditional along ``order`` for the masked-input MLPs (orderless-NADE trick):
    the first layer is linear in ``[onehot * visible, visible]``, so the pre-activations of all
    ``N`` steps are the known sites' plus an exclusive cumulative sum of the generated sites'
    weight columns, ``O(B N W)`` instead of ``N`` first-layer products; the residual blocks run
    once on the ``(B, N, W)`` states and only each step's own ``q`` head rows are evaluated."""
    N, q = model.n_sites, model.n_states
    bb = model.backbone
    h0 = bb.first_layer(model.masked_onehot(x, known), cond)  # (B, W) known sites and condition
    w_in = bb.inp.weight.T.reshape(N, q + 1, -1)  # [site, channel, W]
    cols = w_in[order, x.gather(1, order)] + w_in[order, q]  # (B, N, W) column of each step's site
    prev = torch.cat([torch.zeros_like(cols[:, :1]), cols[:, :-1]], 1).cumsum(1)  # (B, N, W) steps < t
    h = bb.rest(h0[:, None, :] + prev)  # (B, N, W) state before each step
    rank = order.argsort(1)  # (B, N): the step of each site
    h_site = h.gather(1, rank[..., None].expand_as(h))  # (B, N, W) state before each site is drawn
    w_head = head.weight.view(N, q, -1)  # (N, q, W)
    logits = torch.bmm(h_site.transpose(0, 1), w_head.transpose(1, 2)).transpose(0, 1)  # (B, N, q) per site
    logits = logits + head.bias.view(N, q)
    return logits.gather(1, order[..., None].expand(-1, -1, q))  # (B, N, q) in step order


class AnyOrderMLP(Model):
    """Any-order MLP ARM (``ao-arm-mlp``); see the module docstring."""

    name = "ao-arm-mlp"

    def __init__(
        self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: MLPConfig
    ) -> None:
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        self.backbone = _MaskedInputMLP(
            n_sites=self.n_sites, n_states=n_states, cond_box=cond_box, config=config
        )
        self.head = nn.Linear(config.width, self.n_sites * self.n_states)

    def _logits(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        h = self.backbone(self.masked_onehot(x, visible), cond)  # (B, W)
        return self.head(h).view(x.shape[0], self.n_sites, self.n_states)

    @torch.no_grad()
    def any_order_stepper(self, x: Tensor, visible: Tensor, cond: Tensor) -> _AnyOrderMLPStepper:
        return _AnyOrderMLPStepper(self, self.head, *self._check(x, visible, cond))

    def any_order_path_logits(self, x: Tensor, known: Tensor, order: Tensor, cond: Tensor) -> Tensor:
        x, known, cond = self._check(x, known, cond)
        return _path_logits(self, self.head, x, known, order, cond)


class MAMMLP(Model):
    """Marginalisation model on the any-order MLP backbone (``mam-mlp``): two heads."""

    name = "mam-mlp"
    has_marginal = True

    def __init__(
        self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: MLPConfig
    ) -> None:
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        self.backbone = _MaskedInputMLP(
            n_sites=self.n_sites, n_states=n_states, cond_box=cond_box, config=config
        )
        self.cond_head = nn.Linear(config.width, self.n_sites * self.n_states)
        self.marginal_head = nn.Linear(config.width, 1)

    def _heads(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(self.masked_onehot(x, visible), cond)  # (B, W)
        logits = self.cond_head(h).view(x.shape[0], self.n_sites, self.n_states)
        return logits, self.marginal_head(h)[:, 0]

    @torch.no_grad()
    def any_order_stepper(self, x: Tensor, visible: Tensor, cond: Tensor) -> _AnyOrderMLPStepper:
        return _AnyOrderMLPStepper(self, self.cond_head, *self._check(x, visible, cond))

    def any_order_path_logits(self, x: Tensor, known: Tensor, order: Tensor, cond: Tensor) -> Tensor:
        x, known, cond = self._check(x, known, cond)
        return _path_logits(self, self.cond_head, x, known, order, cond)
