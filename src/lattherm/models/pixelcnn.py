"""Masked-convolution ARM on the torus (``fo-pixelcnn``): VAN's PixelCNN with periodic wrap-around.

After Wu, Wang and Zhang's variational autoregressive networks (PRL 2019): a PixelCNN in raster
order whose first masked convolution excludes the centre site (type A) and whose later ones
include it (type B), with residual connections, a 1x1 output convolution to the ``q`` logits of
each site, and one pass with everything visible giving all ``N`` conditionals.

**The image.** The lattice's cell coordinates in row-major order are the raster order: on an
``L0 x L1`` torus site ``(r, c)`` is at position ``p = r L1 + c``. A box of more dimensions is
read as an image whose rows are its leading coordinates flattened (``n_1 ... n_{d-1}`` rows of
``n_d`` columns; a chain is one row): the raster order stays exact, the wrap is the torus's in
the last direction and the rows' in the flattened one. :attr:`order` lists the storage index of
each position (the identity for a row-major lattice).

**Periodic causal taps.** Every masked convolution of half-width ``k`` has a ``(2k+1) x (2k+1)``
kernel of offsets ``(dr, dc)``; the offset reads the site ``((r+dr) mod L0, (c+dc) mod L1)`` of the
torus exactly where that site comes earlier in raster order, zero elsewhere:

* rows above (``dr < 0``, ``r + dr >= 0``): every column, wrapped around (a site at the left edge
  sees the previous rows' right-edge neighbours); above row 0 there is nothing (zero padding);
* the own row (``dr = 0``): the sites to the left (``dc < 0``, no wrap: the wrapped ones are
  still to come), the centre for type B only, and to the right only past the right edge
  (``c + dc >= L1``, the row's first sites, already drawn: the last column sees its periodic
  partner ``(r, 0)``);
* rows below only past the bottom edge (``r + dr >= L0``, wrapped to the rows ``r + dr - L0``
  drawn first, every column wrapped: the last row sees its periodic partners in row 0).

Offsets of ``|dr| >= L0`` or ``|dc| >= L1`` that would wrap onto the own position or later are
masked. Each layer is four plain convolutions (rows above with circular column padding, the own
row's left part with zero padding, the wrapped rows below and the wrapped columns to the right,
both only where they exist), and :func:`periodic_taps` gives the same taps as a neighbour table
(the incremental sampler's, and the causality tests' reference). The input is the one-hot state
times ``visible`` and the visible flag (padding reads as an empty, invisible site, so the network
knows where the top rows and the left edge are).

**Conditions.** The Fourier features of ``(T, field)`` go through a small MLP to a per-channel
scale and shift (FiLM) of each layer's input to its nonlinearity, so the first site's conditional
depends on the condition too. The weights do not depend on the box (:attr:`size_free`: the same
weights define the model on any lattice; the masks are rebuilt from the geometry).

**Disordered instances.** On a disordered system of pair couplings (the EA spin glass) the
conditionals depend on the couplings around each site, which shared convolution weights cannot
know: the model then reads the instance's coupling to each lattice neighbour (``z`` channels per
site), through a full periodic convolution, as a per-site bias of every layer (zero at
initialisation). The couplings are not states, so reading them everywhere keeps the order's
causality; they are rebuilt from the system, not stored in checkpoints.

**Sampling** is incremental (:meth:`fixed_order_stepper`): every layer's activations are cached,
and drawing position ``t`` computes each layer at ``t`` alone from its taps, so the ``N`` steps cost
about one forward pass instead of ``N``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lattherm.conditions import CondBox
from lattherm.lattices import Lattice
from lattherm.models.base import FourierCondition, Model, check_integers

__all__ = ["PixelCNNConfig", "PixelCNN", "image_shape", "periodic_taps"]


@dataclass
class PixelCNNConfig:
    channels: int = 32  # feature channels of every masked convolution
    layers: int = 4  # masked convolutions: one type A, then residual type B
    kernel: int = 3  # half-width k: taps within k rows and k columns
    cond_width: int = 64  # width of the condition MLP that gives each layer's scale and shift
    n_freq: int = 8  # Fourier frequencies per condition variable


def image_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(rows, columns)`` of the raster image of a box: the leading directions flattened."""
    return int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1])


def periodic_taps(L0: int, L1: int, k: int, *, centre: bool) -> Tensor:
    """``(N, (2k+1)^2)`` long: for position ``p = r L1 + c`` and tap ``(dr + k) (2k+1) + dc + k``,
    the position that offset ``(dr, dc)`` reads on the ``L0 x L1`` torus (see the module
    docstring), or ``N`` (nothing) where that site is not earlier in raster order. ``centre``:
    the own position is read (type B)."""
    N, K = L0 * L1, 2 * k + 1
    out = torch.full((N, K * K), N, dtype=torch.long)
    for r, c in itertools.product(range(L0), range(L1)):
        for dr, dc in itertools.product(range(-k, k + 1), repeat=2):
            if dr < 0:
                src = (r + dr, (c + dc) % L1) if r + dr >= 0 else None
            elif dr > 0:
                src = (r + dr - L0, (c + dc) % L1) if dr < L0 and r + dr >= L0 else None
            elif dc < 0:
                src = (r, c + dc) if c + dc >= 0 else None
            elif dc > 0:
                src = (r, c + dc - L1) if dc < L1 and c + dc >= L1 else None
            else:
                src = (r, c) if centre else None
            if src is not None:
                out[r * L1 + c, (dr + k) * K + dc + k] = src[0] * L1 + src[1]
    return out


class _PeriodicCausalConv(nn.Module):
    """One masked convolution on the torus (type A without the centre tap, type B with it)."""

    def __init__(self, c_in: int, c_out: int, k: int, L0: int, L1: int, *, centre: bool) -> None:
        super().__init__()
        K = 2 * k + 1
        self.k, self.L0, self.L1 = k, L0, L1
        self.weight = nn.Parameter(torch.empty(c_out, c_in, K, K))
        self.bias = nn.Parameter(torch.empty(c_out))
        # the taps this box allows (others wrap onto the own position or later)
        d = torch.arange(-k, k + 1)
        dr, dc = d[:, None].expand(K, K), d[None, :].expand(K, K)
        keep = (dr < 0) | ((dr > 0) & (dr < L0)) | ((dr == 0) & ((dc < 0) | ((dc > 0) & (dc < L1))))
        if centre:
            keep |= (dr == 0) & (dc == 0)
        dt = torch.get_default_dtype()
        self.register_buffer("mask", keep.to(dt), persistent=False)
        fan_in = c_in * int(keep[: k + 1].sum())  # the taps of an interior site: rows above, left
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -math.sqrt(3.0) * bound, math.sqrt(3.0) * bound)
        nn.init.uniform_(self.bias, -bound, bound)
        # index maps of the padded inputs, rebuilt from the geometry
        self.register_buffer("cols", (torch.arange(L1 + 2 * k) - k) % L1, persistent=False)
        self.down_from = max(0, L0 - k)  # rows that can see wrapped rows below
        rows = torch.arange(self.down_from, L0 + k - 1) + 1 - L0
        self.register_buffer("down_rows", rows.clamp(0, L0 - 1), persistent=False)
        self.register_buffer("down_ok", ((rows >= 0) & (rows < L0)).to(dt)[:, None], persistent=False)
        self.right_from = max(0, L1 - k)  # columns that can see wrapped columns to the right
        cols = torch.arange(self.right_from, L1 + k - 1) + 1 - L1
        self.register_buffer("right_cols", cols.clamp(0, L1 - 1), persistent=False)
        self.register_buffer("right_ok", ((cols >= 0) & (cols < L1)).to(dt), persistent=False)

    def masked_weight(self) -> Tensor:
        return self.weight * self.mask

    def forward(self, h: Tensor) -> Tensor:
        """``(B, c_in, L0, L1)`` → ``(B, c_out, L0, L1)``."""
        k, L0 = self.k, self.L0
        w = self.masked_weight()
        wrapped = h[:, :, :, self.cols]  # (B, c, L0, L1 + 2k): columns wrapped around
        above = F.pad(wrapped, (0, 0, k, 0))[:, :, : L0 + k - 1]  # row m: row m - k (zeros above row 0)
        out = F.conv2d(above, w[:, :, :k], self.bias)
        out = out + F.conv2d(F.pad(h, (k, 0)), w[:, :, k : k + 1, : k + 1])  # own row, left
        below = wrapped[:, :, self.down_rows] * self.down_ok  # rows past the bottom edge: rows 0..
        out[:, :, self.down_from :] += F.conv2d(below, w[:, :, k + 1 :])
        right = h[:, :, :, self.right_cols] * self.right_ok  # columns past the right edge: columns 0..
        out[:, :, :, self.right_from :] += F.conv2d(right, w[:, :, k : k + 1, k + 1 :])
        return out


class PixelCNN(Model):
    """Periodic masked-convolution FO-ARM (``fo-pixelcnn``); see the module docstring."""

    name = "fo-pixelcnn"
    fixed_order = True
    size_free = True

    @classmethod
    def check_config(cls, config: PixelCNNConfig, periods: tuple[int, ...]) -> None:
        check_integers(config, "channels", "layers", "kernel", "cond_width", "n_freq")

    uses_couplings = "disordered"

    def __init__(self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: PixelCNNConfig,
                 couplings: tuple[Tensor, Tensor] | None = None) -> None:  # fmt: skip
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        L0, L1 = image_shape(lattice.shape)
        self.L0, self.L1 = L0, L1
        q, C, k = self.n_states, config.channels, config.kernel
        # raster position p -> storage index of the site with the p-th row-major cell coordinate
        raster = np.array(list(itertools.product(*(range(n) for n in lattice.shape))), dtype=np.int64)
        order = torch.from_numpy(lattice.index(raster)).long()
        self.order = order  # the registered buffer of fixed-order models
        self.register_buffer("position", order.argsort(), persistent=False)  # storage index -> position
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        self.cond_mlp = nn.Sequential(
            nn.Linear(self.cond_embed.out_features, config.cond_width),
            nn.GELU(),
            nn.Linear(config.cond_width, config.layers * 2 * C),
        )
        self.convs = nn.ModuleList(
            _PeriodicCausalConv(q + 1 if i == 0 else C, C, k, L0, L1, centre=i > 0) for i in range(config.layers)
        )
        self.out = nn.Linear(C, q)
        self.coupling_net = None
        if couplings is not None:
            # the instance's couplings to each lattice neighbour, a map of z channels in raster order;
            # a full periodic convolution turns it into a per-site bias of every layer (the couplings
            # are not states: the conditionals may read them everywhere)
            bonds, Jb = couplings
            Jm = torch.zeros(self.n_sites, self.n_sites, dtype=torch.float64)
            b = torch.as_tensor(bonds).long()
            Jb = torch.as_tensor(Jb, dtype=torch.float64).expand(len(b))
            Jm.index_put_((b[:, 0], b[:, 1]), Jb, accumulate=True)
            Jm.index_put_((b[:, 1], b[:, 0]), Jb, accumulate=True)
            nb = lattice.neighbours()  # (N, z) storage indices, in the lattice's offset order
            cmap = Jm[torch.arange(self.n_sites)[:, None], nb][order]  # (N, z) in raster order
            self.register_buffer("coupling_map", cmap.T.reshape(1, -1, L0, L1).to(torch.get_default_dtype()),
                                 persistent=False)  # fmt: skip
            self.coupling_net = nn.Conv2d(nb.shape[1], config.layers * C, 2 * k + 1, padding=k, padding_mode="circular")
            nn.init.zeros_(self.coupling_net.weight)
            nn.init.zeros_(self.coupling_net.bias)

    def _site_bias(self) -> Tensor | None:
        """``(layers, C, L0, L1)``: each layer's per-site bias from the couplings (None without)."""
        if self.coupling_net is None:
            return None
        return self.coupling_net(self.coupling_map.to(self.dtype)).view(self.config.layers, -1, self.L0, self.L1)

    def _film(self, cond: Tensor) -> Tensor:
        """``(B, layers, 2, C)``: each layer's scale (added to 1) and shift."""
        C = self.config.channels
        return self.cond_mlp(self.cond_embed(cond)).view(-1, self.config.layers, 2, C).to(self.dtype)

    @staticmethod
    def _act(h: Tensor, film: Tensor) -> Tensor:
        """GELU of ``h`` (B, C, ...) scaled and shifted per channel by ``film`` (B, 2, C)."""
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.ndim - 2)
        return F.gelu(h * (1.0 + film[:, 0].reshape(shape)) + film[:, 1].reshape(shape))

    def _logits(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        B = x.shape[0]
        inp = self.masked_onehot(x, visible)[:, self.order]  # (B, N, q + 1) in raster order
        h = inp.transpose(1, 2).reshape(B, -1, self.L0, self.L1)
        film = self._film(cond)
        sb = self._site_bias()
        h = self.convs[0](h)
        if sb is not None:
            h = h + sb[0]
        for i, conv in enumerate(self.convs[1:]):
            h = h + conv(self._act(h, film[:, i]))
            if sb is not None:
                h = h + sb[i + 1]
        a = self._act(h, film[:, -1]).flatten(2).transpose(1, 2)  # (B, N, C) in raster order
        return self.out(a)[:, self.position]  # (B, N, q) in storage order

    @torch.no_grad()
    def fixed_order_stepper(self, cond: Tensor) -> _PixelCNNStepper:
        cond = torch.as_tensor(cond, device=self.out.weight.device)
        return _PixelCNNStepper(self, cond.reshape(-1, 2))


class _PixelCNNStepper:
    """Incremental sampling: every layer's input at the positions drawn so far is cached
    (``(N + 1, B, c)``, the last slot empty; position-major, so that a position's taps are whole
    blocks of memory), and position ``t`` is computed from its taps alone (:func:`periodic_taps`,
    the same offsets as the convolutions). The cost of a sample grows as ``N``."""

    def __init__(self, model: PixelCNN, cond: Tensor) -> None:
        self.m = model
        B, N, q, C = cond.shape[0], model.n_sites, model.n_states, model.config.channels
        k, dt, dev = model.config.kernel, model.dtype, cond.device
        self.film = model._film(cond)
        sb = model._site_bias()
        self.site_bias = None if sb is None else sb.flatten(2)  # (layers, C, N) in raster order
        self.feats = [torch.zeros(N + 1, B, q + 1 if i == 0 else C, dtype=dt, device=dev)
                      for i in range(len(model.convs) + 1)]  # fmt: skip
        self.layers = []  # per layer: per position (tap positions, weight (n_taps c_in, c_out)), bias
        for i, conv in enumerate(model.convs):
            taps = periodic_taps(model.L0, model.L1, k, centre=i > 0).to(dev)
            w = conv.masked_weight().flatten(2).permute(2, 1, 0)  # (taps, c_in, c_out)
            per_pos = []
            for p in range(N):
                use = torch.nonzero(taps[p] < N)[:, 0]
                per_pos.append((taps[p, use], w[use].reshape(-1, w.shape[-1])))
            self.layers.append((per_pos, conv.bias))

    def logits(self, t: int) -> Tensor:
        m, B = self.m, self.feats[0].shape[1]
        h = None
        for i, (per_pos, bias) in enumerate(self.layers):
            src, w = per_pos[t]
            if len(src):
                taps = self.feats[i].index_select(0, src)  # (n_taps, B, c_in)
                z = bias + taps.permute(1, 0, 2).reshape(B, -1) @ w
            else:
                z = bias.expand(B, -1)
            if self.site_bias is not None:
                z = z + self.site_bias[i, :, t]
            h = z if h is None else h + z
            self.feats[i + 1][t] = m._act(h, self.film[:, i])
        return m.out(self.feats[-1][t])

    def observe(self, t: int, a: Tensor) -> None:
        q = self.m.n_states
        self.feats[0][t, :, :q] = F.one_hot(a, q).to(self.feats[0].dtype)
        self.feats[0][t, :, q] = 1.0
