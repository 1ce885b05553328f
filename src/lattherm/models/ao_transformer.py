"""Any-order Transformer ARM (``ao-transformer``): exact ``log q(x|σ)`` along any order in one pass.

**What it computes.** Along an order σ (known sites first, see below) the model gives every
conditional ``q(x_σ(t) | x_σ(<t), σ(≤t), c)`` from one causal forward pass (σ-GPT, Pannatier et al.
2024; XLNet's two streams): ``log q(x|σ)`` and its gradient cost one pass, and sampling is
incremental with a key/value cache (``N`` steps of one token each, attention over the sites already
drawn). The path log-probability of the conditionals actually used is exact; for every σ the
distribution ``q(·|σ)`` is exactly normalised.

**Two streams, in site space.** Token ``i`` is site ``i``; its rank ``ρ_i`` is the step at which
the site is generated (``ρ = σ⁻¹``). The *content* stream embeds the site's state and the
condition and runs ``n_blocks`` pre-norm blocks in which token ``i`` attends to the tokens of rank
``≤ ρ_i`` (a causal Transformer over the configuration permuted by σ). The *query* stream predicts
site ``j``: it starts from a learned vector plus the condition (it knows nothing about ``x_j``) and
runs ``n_query_blocks`` blocks attending to the final content states of the tokens of rank
``< ρ_j``; a 2-layer head gives the ``q`` logits. A begin-of-sequence token (condition only) is
visible to every query and content token, so the first site's conditional and the empty prefix
are defined. The condition's Fourier features, through a small MLP, are added to every token.

**Positions enter only as relative lattice displacements.** Every attention score gets a learned
bias per head and block, indexed by the minimum-image displacement ``r_key − r_query`` on the torus
(cell coordinates of ``lattice.coords``, periods ``lattice.periods``), each component clipped to
the radius ``R`` (``|d_k| > R``: one "far" bucket per component, whatever the sign). Where the
period is even and ``|d_k| = P/2 <= R`` the two images ``±P/2`` are equally near: the bias is the
mean of their two entries. Nothing else knows where a site is: the network is exactly equivariant
under lattice translations (translating the configuration and the order translates nothing else),
and its parameters do not depend on the box, so the same weights define a model on any L×L torus
or CuAu cell (``load_state_dict`` across sizes; ``R`` below half the training period keeps every
displacement the bigger box uses a trained one).

**Far buckets and the box size.** A far bucket holds more sites in a bigger box (8x8, ``R = 3``:
one site per row of the ``d_x`` far bucket; 12x12: five), so the summed kernel weights and the
softmax mass of far keys grow with the box, and a model that learned to use them (the checkerboard
family does: its first sublattice needs the drawn magnetisation) meets inputs it never saw. With
``far_mean`` every visible key of a far bucket (of the first image) is counted for its query and
enters with ``-log n`` added to its attention score and its kernel weight divided by ``n``: the
far field enters as a mean over its bucket, an intensive quantity. The counts depend on the visible
set only, so every conditional stays normalised and the model translation equivariant.

**In-painting and the canonical prefix.** Known sites come first, in ascending storage order, then
the sampled sites in the order's relative order (:func:`lattherm.sampling.sample` and
:func:`~lattherm.sampling.log_prob` use :meth:`any_order_stepper` and :meth:`any_order_path_logits`,
which agree exactly). The conditionals depend on the order of the prefix, not only on the visible
set (as in σ-GPT and XLNet): :meth:`conditional_logits` ``(x, visible, cond)`` is the conditional of
every site given the visible sites taken in ascending storage order, which is the model's
conditional along the storage order and at the first step after a known prefix. Code that builds a
path from ``conditional_logits`` with sites revealed in another order (the per-step fallback of
:func:`~lattherm.sampling.log_prob`, the k-step gradient estimate ``ao_grad_steps``) would evaluate
a different (still normalised) model; with ``n_blocks = 0`` (no content self-attention) the
conditionals depend on the visible set only and every path is consistent with it.

**Order families.** ``orders`` names the distribution of ``order="random"`` for this model
(:meth:`draw_orders`; training draws its orders there): ``random`` (uniform permutations),
``raster`` (row-major in the box's cell coordinates), ``snake`` (boustrophedon), ``checkerboard``
(the even sublattice ``Σ_k r_k`` even first, each in raster order) and ``coarse-to-fine`` (sites on
the coarsest stride-2^k sublattice first, raster within a level); every structured order is taken
at a uniformly random lattice translation, and with ``order_reflections`` also under random
reflections of each axis and permutations of axes of equal period. Explicit orders (in-/out-
painting, any σ) stay possible: the model is exact along every order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lattherm.conditions import CondBox
from lattherm.lattices import Lattice
from lattherm.models.base import FourierCondition, Model, check_integers

__all__ = ["AOTransformerConfig", "AOTransformer", "ORDER_FAMILIES", "relative_bias_index", "family_orders"]

#: the order families of ``AOTransformerConfig.orders``
ORDER_FAMILIES = ("random", "raster", "snake", "checkerboard", "coarse-to-fine")


@dataclass
class AOTransformerConfig:
    dim: int = 64  # token width
    n_blocks: int = 2  # causal content blocks (0: conditionals depend on the visible set only)
    n_query_blocks: int = 1  # query-stream blocks (attend to the content of the prefix)
    n_heads: int = 4  # attention heads
    mlp_ratio: int = 2  # hidden width of each block's MLP, in units of dim
    radius: int = 3  # relative attention biases: displacement components clipped to ±radius
    orders: str = "random"  # order family of order="random" (training and sampling)
    order_reflections: bool = True  # structured orders also under random axis reflections/permutations
    kernel: bool = True  # kernel heads: translation-equivariant masked convolutions next to the softmax heads
    far_mean: bool = False  # far buckets count-normalised: their keys enter as a mean, whatever the box size
    film: bool = True  # FiLM of every block's normalised inputs (and the head's) by the condition
    n_freq: int = 8  # Fourier frequencies per condition variable


# ---------------------------------------------------------------------------------------- geometry
def relative_bias_index(coords: np.ndarray, periods: tuple[int, ...], radius: int) -> tuple[Tensor, Tensor, int]:
    """Bias-table lookup of every ordered pair of sites (and the begin token).

    Returns ``(idx, w, n_table)``: ``idx`` (K, N+1, N+1) long and ``w`` (K, N+1, N+1) float64 such that
    the bias of query ``j`` looking at key ``i`` is ``Σ_k w[k, j, i] · table[idx[k, j, i]]``, with
    ``table`` of ``n_table + 1`` rows: ``(2R + 2)^d`` displacement buckets (per component ``-R..R`` and
    "far") and the last row for the begin token (index ``N``, as key). ``K ≤ 2^d`` averages the two
    images ``±P/2`` of an even period (module doc)."""
    coords = np.asarray(coords, dtype=np.int64)
    N, d = coords.shape
    R = int(radius)
    width = 2 * R + 2
    n_table = width**d
    diff = coords[None, :, :] - coords[:, None, :]  # (N, N, d): [query j, key i] = r_i - r_j
    opts_a, opts_b, amb = [], [], []
    for k, P in enumerate(periods):
        m = np.mod(diff[..., k], int(P))  # 0..P-1
        near = np.where(2 * m <= P, m, m - P)  # min image; +P/2 for the even tie
        tie = 2 * m == P  # the other image -P/2 is as near
        other = np.where(tie, -near, near)

        def bucket(v: np.ndarray) -> np.ndarray:
            return np.where(np.abs(v) <= R, v + R, 2 * R + 1)

        a, b = bucket(near), bucket(other)
        opts_a.append(a)
        opts_b.append(b)
        amb.append(a != b)
    strides = [width ** (d - 1 - k) for k in range(d)]
    idx_list, w_list = [], []
    for bits in range(1 << d):
        idx = np.zeros((N, N), dtype=np.int64)
        w = np.ones((N, N), dtype=np.float64)
        for k in range(d):
            use_b = (bits >> k) & 1
            idx += (opts_b[k] if use_b else opts_a[k]) * strides[k]
            w *= np.where(amb[k], 0.5, 1.0 - use_b)
        if bits and not w.any():
            continue
        idx_list.append(idx)
        w_list.append(w)
    K = len(idx_list)
    idx = np.full((K, N + 1, N + 1), n_table, dtype=np.int64)  # begin token (row or column N): its own row
    w = np.zeros((K, N + 1, N + 1), dtype=np.float64)
    w[0, :, N] = 1.0  # key = begin token: the sink bias
    w[0, N, :N] = 1.0  # the begin token never looks at sites (masked); any finite value
    for k in range(K):
        idx[k, :N, :N] = idx_list[k]
        w[k, :N, :N] = w_list[k]
    return torch.from_numpy(idx), torch.from_numpy(w), n_table


def far_bucket_id(idx0: Tensor, radius: int, d: int) -> tuple[Tensor, int]:
    """``(N+1, N+1)`` compact id ``0..F-1`` of the far bucket of every pair under the first image
    ``idx0`` (a bucket with a component beyond the radius), ``F`` for near pairs and the begin token;
    and ``F``."""
    width = 2 * int(radius) + 2
    n_table = width**d
    digits = torch.stack([(idx0 // width ** (d - 1 - k)) % width for k in range(d)])
    far = (digits == width - 1).any(0) & (idx0 < n_table)
    table_far = torch.zeros(n_table + 1, dtype=torch.bool)
    table_far[idx0[far]] = True
    compact = torch.cumsum(table_far.long(), 0) - 1
    F = int(table_far.sum())
    return torch.where(far, compact[idx0], F), F


def _far_counts(fid: Tensor, visible: Tensor, F: int, dtype: torch.dtype) -> Tensor:
    """``1/n`` for every visible key of a far bucket (``n`` its visible keys for that query), 1
    elsewhere: ``fid`` (Q, S) or (b, S) bucket ids, ``visible`` (b, Q, S) or (b, S) bool."""
    fid = fid.expand(visible.shape)
    v = visible.to(dtype)
    n = torch.zeros(*visible.shape[:-1], F + 1, dtype=v.dtype, device=v.device).scatter_add_(-1, fid, v)
    n = n.gather(-1, fid)
    return torch.where((fid < F) & visible, 1.0 / n.clamp(min=1.0), torch.ones((), dtype=v.dtype, device=v.device))


def _box_transform(coords: Tensor, periods: Tensor, n: int, reflections: bool, generator, device) -> Tensor:
    """``(n, N, d)`` coordinates after a random translation (and reflections / permutations of equal
    periods), wrapped into the box."""
    N, d = coords.shape
    shift = (torch.rand(n, d, generator=generator, device=device) * periods).long().clamp_max(periods - 1)
    r = torch.remainder(coords[None] - shift[:, None, :], periods)  # (n, N, d)
    if not reflections:
        return r
    flip = torch.rand(n, d, generator=generator, device=device) < 0.5
    r = torch.where(flip[:, None, :], torch.remainder(-r, periods), r)
    # permute axes of equal period: random keys, sorted within groups of equal period
    keys = torch.rand(n, d, generator=generator, device=device) + periods[None].double() * 2.0
    perm = keys.argsort(1)  # axes sorted by period first (the offset), randomly within a period
    base = (periods.double() * 2.0).argsort(stable=True)  # the unpermuted arrangement of the same sort
    out = torch.empty_like(r)
    out[:, :, base] = r.gather(2, perm[:, None, :].expand(n, N, d))
    return out


def family_orders(
    family: str, coords: Tensor, periods: tuple[int, ...], n: int, *, reflections: bool = True,
    generator: torch.Generator | None = None, device=None,
) -> Tensor:
    """``(n, N)`` orders of ``family`` (:data:`ORDER_FAMILIES`, module doc) on a box of these cell
    coordinates and periods, each with its own random lattice transformation."""
    coords = torch.as_tensor(coords, device=device).long()
    N, d = coords.shape
    if family == "random":
        return torch.rand(n, N, generator=generator, device=device).argsort(dim=1)
    if family not in ORDER_FAMILIES:
        raise ValueError(f"unknown order family {family!r}; expected one of {list(ORDER_FAMILIES)}")
    P = torch.as_tensor(periods, device=device).long()
    r = _box_transform(coords, P, n, reflections, generator, device)  # (n, N, d)
    strides = torch.ones(d, dtype=torch.long, device=device)
    for k in range(d - 2, -1, -1):
        strides[k] = strides[k + 1] * P[k + 1]
    if family == "snake":  # boustrophedon: an axis runs backwards when the slower ones sum to odd
        acc = torch.zeros(n, N, dtype=torch.long, device=device)
        for k in range(d):  # axis k runs backwards where the position along the slower axes is odd
            v = torch.where(acc % 2 == 1, P[k] - 1 - r[..., k], r[..., k])
            acc = acc * P[k] + v
        key = acc
    else:
        key = (r * strides).sum(-1)  # raster
        if family == "checkerboard":
            key = key + (r.sum(-1) % 2) * N
        elif family == "coarse-to-fine":
            level = torch.zeros(n, N, dtype=torch.long, device=device)
            s = 2
            while s <= int(P.max()):
                level = level + (torch.remainder(r, s) == 0).all(-1).long()
                s *= 2
            key = key - level * N  # the coarsest level first
    return key.argsort(dim=1)


# ---------------------------------------------------------------------------------------- layers
class _Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(hd) + mask) v`` on ``(B, H, Q, hd)`` queries and ``(B, H, S, hd)``
    keys/values with an additive ``(B, H, Q, S)`` float mask (−inf: not visible; every row has a
    visible key, the begin token). Written out: on the CPU it is faster than
    ``scaled_dot_product_attention`` with a float mask that needs a gradient (its math path checks
    for empty rows; its flash kernel is slow for one query)."""
    B, H, Q, hd = q.shape
    S = k.shape[2]
    mask = mask.expand(B, H, Q, S).reshape(B * H, Q, S)
    scores = torch.baddbmm(mask, q.reshape(B * H, Q, hd), k.reshape(B * H, S, hd).transpose(1, 2),
                           alpha=1.0 / math.sqrt(hd))  # fmt: skip
    return torch.bmm(scores.softmax(-1), v.reshape(B * H, S, hd)).view(B, H, Q, hd)


def _modulate(x: Tensor, mod: tuple[Tensor, Tensor] | None) -> Tensor:
    """FiLM of a normalised ``(B, Q, D)`` input by the condition: ``x (1 + γ) + β`` (γ, β (B, 1, D))."""
    return x if mod is None else x * (1 + mod[0]) + mod[1]


class _Mixer(nn.Module):
    """The attention sublayer of a block: ``n_heads`` softmax heads with relative biases and, with
    ``kernel``, as many kernel heads (a masked convolution over the visible sites with weights
    ``w_h(r_i − r_j)``, unnormalised), their outputs summed per head before one projection."""

    def __init__(self, dim: int, n_heads: int, kernel: bool) -> None:
        super().__init__()
        self.n_heads, self.hd, self.kernel = n_heads, dim // n_heads, kernel
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, (3 if kernel else 2) * dim)  # keys, values (and kernel values)
        self.proj = nn.Linear(dim, dim)

    def keys_values(self, c: Tensor) -> list[Tensor]:
        """``(B, S, D)`` normalised sources → keys, values (, kernel values), each ``(B, H, S, hd)``."""
        B, S, _ = c.shape
        return list(self.kv(c).view(B, S, -1, self.n_heads, self.hd).permute(2, 0, 3, 1, 4).unbind(0))

    def queries(self, x: Tensor) -> Tensor:
        B, Q, _ = x.shape
        return self.q(x).view(B, Q, self.n_heads, self.hd).transpose(1, 2)  # (B, H, Q, hd)

    def mix(self, q: Tensor, kvs: list[Tensor], mask: Tensor, kern: Tensor | None) -> Tensor:
        """``(B, Q, D)`` from queries ``(B, H, Q, hd)``, sources, the additive ``mask`` and the
        masked kernel weights ``kern`` (B, H, Q, S)."""
        a = _attend(q, kvs[0], kvs[1], mask)
        if self.kernel:
            a = a + torch.matmul(kern, kvs[2])
        B, H, Q, hd = a.shape
        return self.proj(a.transpose(1, 2).reshape(B, Q, H * hd))


class _Block(nn.Module):
    """Pre-norm block: ``h + Mixer(norm h → sources)``, then ``h + MLP(norm h)``. Content blocks
    attend to (the normalised states of) their own stream, query blocks to the final content."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: int, kernel: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = _Mixer(dim, n_heads, kernel)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, mlp_ratio)

    def finish(self, h: Tensor, mixed: Tensor, mod) -> Tensor:
        h = h + mixed
        return h + self.mlp(_modulate(self.norm2(h), None if mod is None else mod[2:]))


# ---------------------------------------------------------------------------------------- model
class AOTransformer(Model):
    """Any-order Transformer ARM (``ao-transformer``); see the module docstring."""

    name = "ao-transformer"
    size_free = True
    #: one forward pass gives every conditional of a path: lattherm.sampling.log_prob prefers it
    #: to the incremental stepper also without gradients
    one_pass_log_prob = True
    #: rows per chunk of a path evaluation without gradients (bounded memory when sampling)
    chunk = 2048

    @classmethod
    def check_config(cls, config: AOTransformerConfig, periods: tuple[int, ...]) -> None:
        check_integers(config, "dim", "n_heads", "mlp_ratio", "n_query_blocks")
        check_integers(config, "n_blocks", "radius", minimum=0)
        if config.dim % config.n_heads:
            raise ValueError(f"AOTransformerConfig.dim ({config.dim}) must be divisible by n_heads ({config.n_heads})")
        if config.orders not in ORDER_FAMILIES:
            raise ValueError(f"AOTransformerConfig.orders must be one of {list(ORDER_FAMILIES)}, got {config.orders!r}")
        if (2 * config.radius + 2) ** len(periods) > 10**6:
            raise ValueError(f"AOTransformerConfig.radius {config.radius}: too many bias buckets in {len(periods)}D")

    def __init__(
        self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: AOTransformerConfig
    ) -> None:
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        D, H = config.dim, config.n_heads
        idx, w, n_table = relative_bias_index(lattice.coords, lattice.periods, config.radius)
        dt = torch.get_default_dtype()
        # geometry: rebuilt from the lattice, not stored in checkpoints (the weights transfer across boxes)
        self.register_buffer("bias_idx", idx, persistent=False)
        self.register_buffer("bias_w", w.to(dt), persistent=False)
        self.register_buffer("coords", torch.as_tensor(lattice.coords).long(), persistent=False)
        fid, self.n_far = far_bucket_id(idx[0], config.radius, len(lattice.periods))
        self.register_buffer("far_id", fid, persistent=False)
        L = config.n_blocks + config.n_query_blocks
        # per block, bucket (+ begin token) and head: attention biases (and kernel weights)
        self.bias_table = nn.Parameter(torch.zeros(L * (2 if config.kernel else 1), n_table + 1, H))
        self.value = nn.Embedding(n_states, D)
        self.begin = nn.Parameter(0.02 * torch.randn(D))
        self.query0 = nn.Parameter(0.02 * torch.randn(D))
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        self.cond_mlp = nn.Sequential(nn.Linear(self.cond_embed.out_features, D), nn.GELU(), nn.Linear(D, D))
        if config.film:  # γ1, β1, γ2, β2 of every block and γ, β of the head: identity at the start
            self.film = nn.Linear(D, (4 * L + 2) * D)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.content = nn.ModuleList(_Block(D, H, config.mlp_ratio, config.kernel) for _ in range(config.n_blocks))
        self.content_norm = nn.LayerNorm(D)
        self.query = nn.ModuleList(_Block(D, H, config.mlp_ratio, config.kernel) for _ in range(config.n_query_blocks))
        self.head_norm = nn.LayerNorm(D)
        self.head = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, n_states))

    # ------------------------------------------------------------------ pieces
    def pair_tables(self) -> tuple[Tensor, Tensor | None]:
        """``(L, H, N+1, N+1)`` attention biases and (with ``kernel``) kernel weights of query ``j``
        looking at key ``i`` (index ``N``: the begin token), content blocks first."""
        t = self.bias_table[:, self.bias_idx]  # (2L, K, N+1, N+1, H)
        b = (t * self.bias_w[None, ..., None].to(t.dtype)).sum(1).permute(0, 3, 1, 2)  # (2L, H, N+1, N+1)
        L = self.config.n_blocks + self.config.n_query_blocks
        return (b[:L], b[L:]) if self.config.kernel else (b, None)

    def conditioning(self, cond: Tensor) -> tuple[Tensor, Tensor | None]:
        """Condition features ``(B, D)`` added to every token, and the FiLM ``(B, 4L + 2, 1, D)``."""
        c = self.cond_mlp(self.cond_embed(cond))
        mods = self.film(c).view(c.shape[0], -1, 1, c.shape[1]) if self.config.film else None
        return c, mods

    @staticmethod
    def _block_mod(mods: Tensor | None, i: int):
        return None if mods is None else mods[:, 4 * i : 4 * i + 4].unbind(1)

    def _head(self, g: Tensor, mods: Tensor | None) -> Tensor:
        return self.head(_modulate(self.head_norm(g), None if mods is None else mods[:, -2:].unbind(1)))

    def draw_orders(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """``(n, N)`` orders of the model's family (``order="random"`` in :mod:`lattherm.sampling`)."""
        return family_orders(self.config.orders, self.coords.to(device), self.lattice.periods, n,
                             reflections=self.config.order_reflections, generator=generator, device=device)  # fmt: skip

    def _run(self, x: Tensor, rank: Tensor, limit: Tensor, cond: Tensor, *, keep_cache: bool = False):
        """The two streams on ``(B, N)`` states with ``rank`` (B, N) (the step of each site); query
        ``j`` sees the sites of rank ``< limit[:, j]``. Returns logits ``(B, N, q)`` per site (and
        with ``keep_cache`` the sources of every block: keys, values (, kernel values))."""
        B, N = x.shape
        D = self.config.dim
        c, mods = self.conditioning(cond)
        bias, kern = self.pair_tables()  # (L, H, N+1, N+1) each
        r_ext = torch.cat([rank, rank.new_full((B, 1), -1)], 1)  # (B, N+1) begin token: rank -1
        neg = torch.tensor(-math.inf, dtype=bias.dtype, device=x.device)
        zero = torch.zeros((), dtype=bias.dtype, device=x.device)
        h = torch.cat([self.value(x), self.begin.expand(B, 1, D)], 1) + c[:, None, :]  # (B, N+1, D)
        caches = []
        if self.content:
            allowed = (r_ext[:, None, :] <= r_ext[:, :, None])[:, None]  # (B, 1, N+1 query, N+1 key)
            gate, on = self._gates(allowed, self.far_id, zero, neg, kern is not None)
            for li, block in enumerate(self.content):
                mod = self._block_mod(mods, li)
                xn = _modulate(block.norm1(h), mod)
                kvs = block.mixer.keys_values(xn)
                if keep_cache:
                    caches.append(kvs)
                mixed = block.mixer.mix(block.mixer.queries(xn), kvs, gate + bias[li][None],
                                        None if kern is None else on * kern[li][None])  # fmt: skip
                h = block.finish(h, mixed, mod)
        hc = self.content_norm(h)  # (B, N+1, D)
        g = (self.query0 + c)[:, None, :].expand(B, N, D)
        allowed_q = (r_ext[:, None, :] < limit[:, :, None])[:, None]  # (B, 1, N query, N+1 key)
        gate_q, on_q = self._gates(allowed_q, self.far_id[:N], zero, neg, kern is not None)
        nc = len(self.content)
        for mi, block in enumerate(self.query):
            mod = self._block_mod(mods, nc + mi)
            kvs = block.mixer.keys_values(hc)
            if keep_cache:
                caches.append(kvs)
            mixed = block.mixer.mix(block.mixer.queries(_modulate(block.norm1(g), mod)), kvs,
                                    gate_q + bias[nc + mi][None, :, :N],
                                    None if kern is None else on_q * kern[nc + mi][None, :, :N])  # fmt: skip
            g = block.finish(g, mixed, mod)
        logits = self._head(g, mods)  # (B, N, q)
        return (logits, caches) if keep_cache else logits

    def _gates(self, allowed: Tensor, fid: Tensor, zero: Tensor, neg: Tensor, kernel: bool):
        """The additive softmax mask and the kernel factor of ``allowed`` (B, 1, Q, S) pairs (with
        ``far_mean``: ``-log n`` and ``1/n`` on far keys, module doc)."""
        if not self.config.far_mean:
            return torch.where(allowed, zero, neg), allowed.to(zero.dtype) if kernel else None
        w = _far_counts(fid, allowed[:, 0], self.n_far, zero.dtype)[:, None]  # (B, 1, Q, S)
        return torch.where(allowed, w.log(), neg), torch.where(allowed, w, zero) if kernel else None

    def _run_chunked(self, x: Tensor, rank: Tensor, limit: Tensor, cond: Tensor) -> Tensor:
        if torch.is_grad_enabled() or x.shape[0] <= self.chunk:
            return self._run(x, rank, limit, cond)
        c = self.chunk
        return torch.cat([self._run(x[s : s + c], rank[s : s + c], limit[s : s + c], cond[s : s + c])
                          for s in range(0, x.shape[0], c)])  # fmt: skip

    @staticmethod
    def _prefix_rank(known: Tensor) -> Tensor:
        """``(B, N)`` ranks with the known sites first in ascending storage order, then the others
        (ascending; their ranks are placeholders)."""
        return known.long().argsort(dim=1, descending=True, stable=True).argsort(dim=1)

    # ------------------------------------------------------------------ Model API
    def _logits(self, x: Tensor, visible: Tensor, cond: Tensor) -> Tensor:
        x = torch.where(visible, x, 0)
        rank = self._prefix_rank(visible)
        n_vis = visible.sum(1, keepdim=True)  # (B, 1)
        return self._run_chunked(x, rank, n_vis.expand_as(rank), cond)

    def any_order_path_logits(self, x: Tensor, known: Tensor, order: Tensor, cond: Tensor) -> Tensor:
        """Every step's conditional along ``order`` (unknown sites first, as sampling passes it) with
        the ``known`` sites as a prefix in ascending storage order: one forward pass."""
        x, known, cond = self._check(x, known, cond)
        n_known = known.sum(1, keepdim=True)  # (B, 1)
        step = order.argsort(1)  # (B, N): the step of each site in `order`
        rank = torch.where(known, known.long().cumsum(1) - 1, n_known + step)
        logits = self._run_chunked(x, rank, rank, cond)  # (B, N, q) per site
        return logits.gather(1, order[..., None].expand(-1, -1, self.n_states))

    @torch.no_grad()
    def any_order_stepper(self, x: Tensor, visible: Tensor, cond: Tensor) -> _AOTStepper:
        return _AOTStepper(self, *self._check(x, visible, cond))


class _AOTStepper:
    """Incremental sampling with a key/value cache (:meth:`Model.any_order_stepper`), in site space:
    slot ``i`` of every block's cache holds site ``i``'s keys and values (and kernel values) once it
    is observed, slot ``N`` the begin token's. ``logits`` runs the query stream of one site per row
    over the observed slots; ``observe`` runs the content stream of the new token (attending to the
    observed slots and itself) and stores its sources. Known sites enter through one causal pass
    at the start; attention then costs ``O(N)`` per step and row."""

    def __init__(self, model: AOTransformer, x: Tensor, visible: Tensor, cond: Tensor) -> None:
        self.m = model
        B, N = x.shape
        self.c, self.mods = model.conditioning(cond)  # (B, D), (B, 4L + 2, 1, D)
        bias, kern = model.pair_tables()  # (L, H, N+1 query, N+1 key)
        self.bias = bias.transpose(1, 2).contiguous()  # (L, N+1 query, H, N+1 key): rows by site
        self.kern = None if kern is None else kern.transpose(1, 2).contiguous()
        self.seen = torch.cat([visible, visible.new_ones(B, 1)], 1)  # (B, N+1) begin token always
        dt = self.c.dtype
        self.gate = torch.where(self.seen, 0.0, -math.inf).to(dt)  # (B, N+1) additive
        self.on = self.seen.to(dt)
        if visible.any():  # the known prefix: one causal pass (its sources only see the prefix)
            rank = model._prefix_rank(visible)
            _, caches = model._run(torch.where(visible, x, 0), rank, rank, cond, keep_cache=True)
            self.cache = [[t.contiguous() for t in kvs] for kvs in caches]
        else:  # only the begin token: its content stream attends to itself alone
            self.cache = []
            D = model.config.dim
            h = (model.begin + self.c)[:, None, :]  # (B, 1, D)
            for li, block in enumerate(model.content):
                mod = model._block_mod(self.mods, li)
                kvs = block.mixer.keys_values(_modulate(block.norm1(h), mod))  # (B, H, 1, hd) each
                self.cache.append([self._slots(t, B, N) for t in kvs])
                # softmax over one key: its value; kernel: the begin token's own weight
                a = kvs[1]
                if kern is not None:
                    a = a + kern[li][None, :, N, N, None, None] * kvs[2]
                h = block.finish(h, block.mixer.proj(a.transpose(1, 2).reshape(B, 1, D)), mod)
            hc = model.content_norm(h)
            for block in model.query:
                self.cache.append([self._slots(t, B, N) for t in block.mixer.keys_values(hc)])

    @staticmethod
    def _slots(t: Tensor, B: int, N: int) -> Tensor:
        """A ``(B, H, N+1, hd)`` cache holding the begin token's ``(B, H, 1, hd)`` in slot N."""
        out = t.new_zeros(B, t.shape[1], N + 1, t.shape[3])
        out[:, :, N:] = t
        return out

    def _rows(self, t: Tensor, rows: Tensor | None) -> Tensor:
        return t if rows is None else t[rows]

    def _mix(self, block: _Block, li: int, xn: Tensor, site: Tensor, rows: Tensor | None) -> Tensor:
        """One token per row (``xn`` (b, 1, D) normalised) through block ``li``'s mixer."""
        kvs = [self._rows(t, rows) for t in self.cache[li]]
        gate, on = self._rows(self.gate, rows), self._rows(self.on, rows)
        if self.m.config.far_mean:  # the site's far buckets counted over what this row has seen
            w = _far_counts(self.m.far_id.index_select(0, site), self._rows(self.seen, rows), self.m.n_far,
                            gate.dtype)
            gate, on = gate + w.log(), on * w
        mask = gate[:, None, None, :] + self.bias[li].index_select(0, site)[:, :, None, :]
        kern = None
        if self.kern is not None:
            kern = on[:, None, None, :] * self.kern[li].index_select(0, site)[:, :, None, :]
        return block.mixer.mix(block.mixer.queries(xn), kvs, mask, kern)

    def logits(self, rows: Tensor | None, site: Tensor) -> Tensor:
        m = self.m
        c, mods = self._rows(self.c, rows), None if self.mods is None else self._rows(self.mods, rows)
        g = (m.query0 + c)[:, None, :]  # (b, 1, D)
        nc = len(m.content)
        for mi, block in enumerate(m.query):
            mod = m._block_mod(mods, nc + mi)
            g = block.finish(g, self._mix(block, nc + mi, _modulate(block.norm1(g), mod), site, rows), mod)
        return m._head(g, mods)[:, 0]  # (b, q)

    def observe(self, rows: Tensor | None, site: Tensor, a: Tensor) -> None:
        m = self.m
        c, mods = self._rows(self.c, rows), None if self.mods is None else self._rows(self.mods, rows)
        b = c.shape[0]
        r = torch.arange(b, device=c.device) if rows is None else rows
        self.seen[r, site] = True  # the new token sees itself
        self.gate[r, site] = 0.0
        self.on[r, site] = 1.0
        h = (m.value(a) + c)[:, None, :]  # (b, 1, D)
        for li, block in enumerate(m.content):
            mod = m._block_mod(mods, li)
            xn = _modulate(block.norm1(h), mod)
            for cache, t in zip(self.cache[li], block.mixer.keys_values(xn), strict=True):
                cache[r, :, site] = t[:, :, 0]
            h = block.finish(h, self._mix(block, li, xn, site, rows), mod)
        hc = m.content_norm(h)
        nc = len(m.content)
        for mi, block in enumerate(m.query):
            for cache, t in zip(self.cache[nc + mi], block.mixer.keys_values(hc), strict=True):
                cache[r, :, site] = t[:, :, 0]
