"""The GNN marginalisation model (``mam-gnn``): message passing on the lattice graph.

**Graph.** Nodes are the sites; every site ``i`` receives one message along each neighbour offset
``o_k`` of the lattice (``lattice.neighbours()``: ``(N, z)``, periodic wrap included; the square
torus has the 4 offsets ``±e_k``, CuAu's FCC box the 12 nearest neighbours). On a box of period 2
the two offsets ``±e_k`` reach the same site and both edges are kept, as the periodic Hamiltonian
counts both bonds.

**Scalar message passing with edge-direction features.** Node features ``h_i ∈ R^H`` start from
``[onehot(x_i) · visible_i, visible_i]`` (invisible sites carry only their flag). Each edge
``k`` has the features ``[o_k B / |o_k B|, |o_k B| / min_k |o_k B|]`` (unit Cartesian direction of
the offset through the lattice basis ``B``, and its length in units of the shortest offset),
which a small per-layer filter MLP turns into a channel-wise filter ``W_k ∈ R^H``. A layer
(pre-norm residual)::

    u_i   = LN(h_i) · (1 + γ_l(c)) + β_l(c)                  # FiLM by the condition c = (T, field)
    m_i   = (1/z) Σ_k W_k ⊙ φ(u_{nb(i, k)})                   # messages from the z neighbours
    h_i  += A(GELU(P u_i + Q m_i [+ G mean_j u_j]))           # [+]: the global node

The optional global node (``global_node``, on by default) adds the mean over all sites of the
layer's inputs to every site's update: a purely local network of ``L`` layers sees ``L`` hops only,
and far from every visible site it cannot know the sign of an ordered phase's magnetisation. The
scalar design is not rotation-equivariant (the filters see the direction of each offset, so a
site tells its left neighbour from its right one); it is exactly equivariant under the
translations of the torus, for every layer is built from the same weights at every site and the
global mean is translation-invariant. The condition enters through the shared
:class:`~lattherm.models.base.FourierCondition` features and one MLP giving every layer's (and the
heads' input's) per-channel scale and shift.

**Heads** (as :class:`~lattherm.models.transformer.MAMTransformer`'s): after a final FiLM'd
LayerNorm, a per-site GELU MLP gives the ``q`` conditional logits of every site, and a per-site
scalar MLP summed over the sites gives the marginal surrogate ``log p(x_visible)`` (extensive like
a log-probability; no offset: the training's anchor ``f(∅ | c)² → 0`` fixes its constant).

No weight depends on the number of sites (:attr:`size_free`: the same weights define the model on
any box of the system; the neighbour table and edge features are rebuilt from the geometry). The
lattice is the system's: on a system without geometry (``rrg``, whose lattice is the ring of
storage positions) the graph is that ring, not the couplings' graph.

**Sampling** (:meth:`any_order_stepper`): each step runs the layers below the last on all sites
and the last layer and the heads at the drawn site only (its neighbours' inputs and the global
mean are all it needs), the same logits as a full pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lattherm.conditions import CondBox
from lattherm.lattices import Lattice
from lattherm.models.base import FourierCondition, Model, check_integers

__all__ = ["GNNConfig", "MAMGNN", "edge_features"]


@dataclass
class GNNConfig:
    hidden: int = 64  # node feature width H
    layers: int = 4  # message-passing layers (each reaches one more hop)
    filter_width: int = 16  # hidden width of each layer's filter MLP of the edge features
    global_node: bool = True  # every layer also adds the mean of all sites' features
    n_freq: int = 8  # Fourier frequencies per condition variable


def edge_features(lattice: Lattice) -> Tensor:
    """``(z, d_cart + 1)`` float64: per neighbour offset, its unit Cartesian direction and its
    length in units of the shortest offset (1 for every nearest neighbour)."""
    vec = np.asarray(lattice.offsets, dtype=np.float64) @ np.asarray(lattice.basis, dtype=np.float64)
    length = np.linalg.norm(vec, axis=1)
    if np.any(length <= 0):
        raise ValueError("mam-gnn: the lattice has a zero neighbour offset")
    feats = np.concatenate([vec / length[:, None], (length / length.min())[:, None]], axis=1)
    return torch.from_numpy(feats)


class _Layer(nn.Module):
    """One message-passing layer on FiLM'd, layer-normalised features (module docstring).

    The messages are computed as one matrix product: ``P u_i + Q m_i`` equals
    ``[u_i, u_nb(i,1), .., u_nb(i,z)] @ [P; Q diag(W_1) φ; ..; Q diag(W_z) φ]ᵀ / z`` (plus the biases),
    one gather and one matrix product per layer instead of ``z`` channel-wise products and sums."""

    def __init__(self, *, hidden: int, edge_dim: int, filter_width: int, global_node: bool) -> None:
        super().__init__()
        H = hidden
        self.norm = nn.LayerNorm(H, elementwise_affine=False)  # scale and shift: the FiLM
        self.filter = nn.Sequential(nn.Linear(edge_dim, filter_width), nn.GELU(), nn.Linear(filter_width, H))
        self.msg = nn.Linear(H, H)  # φ
        self.self_in = nn.Linear(H, H)  # P
        self.msg_in = nn.Linear(H, H, bias=False)  # Q
        self.global_in = nn.Linear(H, H, bias=False) if global_node else None  # G
        self.out = nn.Linear(H, H)  # A

    def inputs(self, h: Tensor, film: Tensor) -> Tensor:
        """``u`` (B, N, H) (or (B, H)): the normalised features under the condition's scale and shift."""
        gamma, beta = film.chunk(2, dim=-1)  # (B, H) each
        if h.ndim == 3:
            gamma, beta = gamma[:, None], beta[:, None]
        return self.norm(h) * (1 + gamma) + beta

    def weights(self, edges: Tensor) -> tuple[Tensor, Tensor]:
        """The stacked ``(H, (z + 1) H)`` weight of ``[u_i, u_nb(i, 1..z)]`` and its ``(H,)`` bias."""
        w = self.filter(edges)  # (z, H): the channel-wise filter of every edge
        z = w.shape[0]
        per_edge = torch.einsum("oh,kh,hi->koi", self.msg_in.weight, w, self.msg.weight) / z  # (z, H, H)
        weight = torch.cat([self.self_in.weight, *per_edge], dim=1)  # (H, (z + 1) H)
        bias = self.self_in.bias + self.msg_in(w.mean(0) * self.msg.bias)
        return weight, bias

    def update(self, pre: Tensor, g: Tensor | None) -> Tensor:
        if self.global_in is not None:
            pre = pre + (self.global_in(g)[:, None] if pre.ndim == 3 else self.global_in(g))
        return self.out(F.gelu(pre))

    def forward(self, h: Tensor, film: Tensor, star: Tensor, edges: Tensor) -> Tensor:
        """``star`` (N, z + 1): each site, then its neighbours."""
        u = self.inputs(h, film)
        B, N, H = u.shape
        g = u.mean(1) if self.global_in is not None else None
        weight, bias = self.weights(edges)
        pre = F.linear(u[:, star.reshape(-1)].view(B, N, star.shape[1] * H), weight, bias)  # (B, N, H)
        return h + self.update(pre, g)

    def forward_one(self, h: Tensor, film: Tensor, star: Tensor, edges: Tensor, sites: Tensor) -> Tensor:
        """The layer's output at one site per row, ``sites`` (B,): ``(B, H)``, equal to
        ``forward(h)[arange(B), sites]``."""
        rows = torch.arange(h.shape[0], device=h.device)
        g = self.inputs(h, film).mean(1) if self.global_in is not None else None
        u = self.inputs(h[rows[:, None], star[sites]], film)  # (B, z + 1, H): only the star of each site
        weight, bias = self.weights(edges)
        return h[rows, sites] + self.update(F.linear(u.flatten(1), weight, bias), g)


class MAMGNN(Model):
    """Marginalisation model on a message-passing network of the lattice graph (``mam-gnn``)."""

    name = "mam-gnn"
    has_marginal = True
    size_free = True

    @classmethod
    def check_config(cls, config: GNNConfig, periods: tuple[int, ...]) -> None:
        check_integers(config, "hidden", "layers", "filter_width", "n_freq")
        if not isinstance(config.global_node, bool):
            raise ValueError(f"GNNConfig.global_node must be a boolean, got {config.global_node!r}")

    def __init__(self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: GNNConfig) -> None:
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        H, L = config.hidden, config.layers
        dt = torch.get_default_dtype()
        edges = edge_features(lattice)
        # the graph is rebuilt from the geometry, never stored in checkpoints
        nb = lattice.neighbours()  # (N, z)
        star = torch.cat([torch.arange(self.n_sites)[:, None], nb], dim=1)  # (N, z + 1): site, neighbours
        self.register_buffer("star", star, persistent=False)
        self.register_buffer("edges", edges.to(dt), persistent=False)  # (z, d_cart + 1)
        self.inp = nn.Linear(n_states + 1, H)
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        self.cond_mlp = nn.Sequential(
            nn.Linear(self.cond_embed.out_features, H), nn.GELU(), nn.Linear(H, 2 * H * (L + 1))
        )
        self.blocks = nn.ModuleList(
            _Layer(hidden=H, edge_dim=edges.shape[1], filter_width=config.filter_width,
                   global_node=config.global_node)
            for _ in range(L)
        )  # fmt: skip
        self.norm = nn.LayerNorm(H, elementwise_affine=False)
        self.cond_head = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Linear(H, n_states))
        self.marginal_head = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Linear(H, 1))

    def films(self, cond: Tensor) -> Tensor:
        """``(L + 1, B, 2H)``: every layer's (and the heads' input's) scale and shift."""
        c = self.cond_mlp(self.cond_embed(cond))  # (B, (L + 1) 2H)
        return c.view(c.shape[0], len(self.blocks) + 1, -1).transpose(0, 1)

    def _head_inputs(self, h: Tensor, film: Tensor) -> Tensor:
        gamma, beta = film.chunk(2, dim=-1)
        if h.ndim == 3:
            gamma, beta = gamma[:, None], beta[:, None]
        return self.norm(h) * (1 + gamma) + beta

    def _backbone(self, x: Tensor, visible: Tensor, films: Tensor, n_layers: int) -> Tensor:
        h = self.inp(self.masked_onehot(x, visible))  # (B, N, H)
        for block, film in zip(self.blocks[:n_layers], films, strict=False):
            h = block(h, film, self.star, self.edges)
        return h

    def _heads(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        films = self.films(cond)
        h = self._head_inputs(self._backbone(x, visible, films, len(self.blocks)), films[-1])  # (B, N, H)
        logits = self.cond_head(h)  # (B, N, q)
        log_marg = self.marginal_head(h)[..., 0].sum(-1)  # (B,) sum-pooled
        return logits, log_marg

    def site_logits(self, x: Tensor, visible: Tensor, films: Tensor, sites: Tensor) -> Tensor:
        """``(B, q)`` conditional logits of one site per row: the last layer and the head run at
        that site only. ``films`` is :meth:`films` of the rows' conditions."""
        h = self._backbone(x, visible, films, len(self.blocks) - 1)
        h1 = self.blocks[-1].forward_one(h, films[-2], self.star, self.edges, sites)  # (B, H)
        return self.cond_head(self._head_inputs(h1, films[-1]))

    @torch.no_grad()
    def any_order_stepper(self, x: Tensor, visible: Tensor, cond: Tensor) -> _GNNStepper:
        return _GNNStepper(self, *self._check(x, visible, cond))


class _GNNStepper:
    """Any-order sampling steps of the GNN (:meth:`Model.any_order_stepper`): the condition's
    scales and shifts are computed once, and each step evaluates the last layer and the heads at
    the drawn site only (:meth:`MAMGNN.site_logits`), in chunks of rows: on the CPU small ones
    whose activations stay in the cache (256 rows of 64 sites: 2x faster than 8192 rows on 8x8),
    on an accelerator large ones."""

    chunk = 8192  # rows per network evaluation on an accelerator
    cpu_chunk_sites = 16384  # rows x sites per network evaluation on the CPU

    def __init__(self, model: MAMGNN, x: Tensor, visible: Tensor, cond: Tensor) -> None:
        self.model = model
        self.x, self.visible = x.clone(), visible.clone()
        self.films = model.films(cond)  # (L + 1, B, 2H)
        cpu = x.device.type == "cpu"
        self.rows_per_pass = max(1, self.cpu_chunk_sites // model.n_sites) if cpu else self.chunk

    def logits(self, rows: Tensor | None, site: Tensor) -> Tensor:
        x, visible, films = self.x, self.visible, self.films
        if rows is not None:
            x, visible, films = x[rows], visible[rows], films[:, rows]
        c = self.rows_per_pass
        if len(x) <= c:
            return self.model.site_logits(x, visible, films, site)
        return torch.cat([
            self.model.site_logits(x[s : s + c], visible[s : s + c], films[:, s : s + c], site[s : s + c])
            for s in range(0, len(x), c)
        ])  # fmt: skip

    def observe(self, rows: Tensor | None, site: Tensor, a: Tensor) -> None:
        rows = torch.arange(self.x.shape[0], device=self.x.device) if rows is None else rows
        self.x[rows, site] = a
        self.visible[rows, site] = True
