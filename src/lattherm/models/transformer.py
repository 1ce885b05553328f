"""The MAM Transformer (``mam-transformer``) with periodic rotary position embeddings.

Tokens: an embedding of ``{0, .., q-1, MASK}`` per site (invisible sites are MASK), plus the
condition's Fourier features through a small MLP, added to every token. Pre-norm blocks
(LayerNorm or RMSNorm; multi-head attention by ``F.scaled_dot_product_attention``, no attention
mask; GELU MLP). Two heads on one backbone: a 3-layer GELU conditional head per site (``q``
logits) and a marginal head, a per-site scalar summed over the sites (the surrogate
``log p(x_visible)``, extensive like a log-probability).

**Periodic RoPE.** Site ``i`` has integer cell coordinates ``r_i`` (``lattice.coords``) in a box
of periods ``P_d``. For each lattice direction ``d`` and ``k = 1..K_d`` with
``K_d = min(rope_k, P_d // 2)`` (higher k alias lower ones), the angle ``θ = 2π k r_{i,d} / P_d``
rotates one pair of dimensions of every head's queries and keys; the remaining head dimensions
are not rotated. Scores then depend on ``θ_j − θ_i``, i.e. on the displacement modulo the
periods: attention, and hence the whole network, is exactly equivariant under translations of
the torus (a configuration translated with periodic wrap gives the translated logits and the
same marginal). Works for any Bravais box: the 2D square torus and CuAu's FCC box in primitive
cell coordinates alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lattherm.conditions import CondBox
from lattherm.lattices import Lattice
from lattherm.models.base import FourierCondition, Model, check_integers

__all__ = ["TransformerConfig", "MAMTransformer", "periodic_rope_angles"]


@dataclass
class TransformerConfig:
    dim: int = 256  # token width (paper: 256 small systems, 512 large)
    n_blocks: int = 4  # transformer blocks (paper: 4 small, 5 large)
    n_heads: int = 8  # attention heads (paper: 8 small, 16 large)
    mlp_ratio: int = 4  # hidden width of each block's MLP, in units of dim
    rope_k: int = 4  # periodic RoPE frequencies per lattice direction (capped at period // 2)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"
    n_freq: int = 8  # Fourier frequencies per condition variable


def periodic_rope_angles(coords: Tensor, periods: tuple[int, ...], rope_k: int) -> Tensor:
    """``(N, F)`` angles ``2π k r_{i,d} / P_d`` per direction d, ``k = 1..min(rope_k, P_d//2)``."""
    cols = []
    for d, P in enumerate(periods):
        k = torch.arange(1, min(int(rope_k), int(P) // 2) + 1, dtype=torch.float64)  # (K_d,)
        r = torch.remainder(coords[:, d].to(torch.float64), P)  # (N,)
        cols.append(2 * math.pi * r[:, None] * k[None, :] / P)  # (N, K_d)
    return torch.cat(cols, dim=1)


def _rotate_(qkv: Tensor, cos: Tensor, sin: Tensor) -> None:
    """In place on ``(B, N, 3, H, hd)`` projections: rotate the pairs ``(f, F + f)`` of every
    head's queries and keys by the ``(N, F)`` angles; values and other dims untouched. (On the
    contiguous projection, before the head permute: ~2x faster than rotating strided q, k.)"""
    n = cos.shape[-1]
    c, s = cos[None, :, None, None, :], sin[None, :, None, None, :]
    a, b = qkv[:, :, :2, :, :n], qkv[:, :, :2, :, n : 2 * n]
    ra, rb = a * c - b * s, a * s + b * c
    a.copy_(ra)
    b.copy_(rb)


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim)
    raise ValueError(f"TransformerConfig.norm must be 'layernorm' or 'rmsnorm', got {kind!r}")


class Block(nn.Module):
    """Pre-norm block: ``h + MHA(norm(h))``, then ``h + MLP(norm(h))``."""

    def __init__(self, *, dim: int, n_heads: int, mlp_ratio: int, norm: str) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = _norm(norm, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = _norm(norm, dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        B, N, D = h.shape
        H = self.n_heads
        qkv = self.qkv(self.norm1(h)).view(B, N, 3, H, D // H)
        _rotate_(qkv, cos, sin)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, H, N, hd) each
        a = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, hd)
        h = h + self.proj(a.transpose(1, 2).reshape(B, N, D))
        return h + self.mlp(self.norm2(h))

    def forward_one(self, h: Tensor, cos: Tensor, sin: Tensor, site: Tensor) -> Tensor:
        """The block's output at one token per row, ``site`` (B,): ``(B, D)``, equal to
        ``forward(h)[arange(B), site]`` (keys and values of every token, one query)."""
        B, N, D = h.shape
        H = self.n_heads
        qkv = self.qkv(self.norm1(h)).view(B, N, 3, H, D // H)
        _rotate_(qkv, cos, sin)
        rows = torch.arange(B, device=h.device)
        q = qkv[rows, site, 0][:, :, None, :]  # (B, H, 1, hd)
        k, v = qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)  # (B, H, N, hd)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, hd)
        h1 = h[rows, site] + self.proj(a.reshape(B, D))  # (B, D)
        return h1 + self.mlp(self.norm2(h1))


class MAMTransformer(Model):
    """Transformer MAM with periodic RoPE (``mam-transformer``); see the module docstring."""

    name = "mam-transformer"
    has_marginal = True

    @classmethod
    def check_config(cls, config: TransformerConfig, periods: tuple[int, ...]) -> None:
        check_integers(config, "dim", "n_blocks", "n_heads", "mlp_ratio")
        check_integers(config, "rope_k", minimum=0)
        D, H = config.dim, config.n_heads
        if D % H:
            raise ValueError(f"TransformerConfig.dim ({D}) must be divisible by n_heads ({H})")
        n_angles = sum(min(int(config.rope_k), int(P) // 2) for P in periods)
        if 2 * n_angles > D // H:
            raise ValueError(
                f"periodic RoPE needs 2 x {n_angles} head dims for periods {tuple(periods)} and "
                f"rope_k={config.rope_k}, but heads have {D // H}: lower rope_k or raise dim / n_heads"
            )

    def __init__(
        self, *, lattice: Lattice, n_states: int, cond_box: CondBox, config: TransformerConfig
    ) -> None:
        super().__init__(lattice=lattice, n_states=n_states, cond_box=cond_box, config=config)
        D, H = config.dim, config.n_heads
        angles = periodic_rope_angles(torch.as_tensor(lattice.coords), lattice.periods, config.rope_k)  # (N, F)
        dt = torch.get_default_dtype()
        self.register_buffer("rope_cos", angles.cos().to(dt), persistent=False)
        self.register_buffer("rope_sin", angles.sin().to(dt), persistent=False)
        self.token = nn.Embedding(n_states + 1, D)  # states 0..q-1 and MASK = q
        self.cond_embed = FourierCondition(cond_box=cond_box, n_freq=config.n_freq)
        self.cond_mlp = nn.Sequential(
            nn.Linear(self.cond_embed.out_features, D), nn.GELU(), nn.Linear(D, D)
        )
        self.blocks = nn.ModuleList(
            Block(dim=D, n_heads=H, mlp_ratio=config.mlp_ratio, norm=config.norm)
            for _ in range(config.n_blocks)
        )
        self.norm = _norm(config.norm, D)
        self.cond_head = nn.Sequential(
            nn.Linear(D, D), nn.GELU(), nn.Linear(D, D), nn.GELU(), nn.Linear(D, n_states)
        )
        self.marginal_head = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, 1))

    def _embed(self, x: Tensor, visible: Tensor, cond_feat: Tensor) -> Tensor:
        tok = torch.where(visible, x, self.n_states)  # (B, N), MASK at invisible sites
        return self.token(tok) + cond_feat[:, None, :]  # (B, N, D)

    def _heads(self, x: Tensor, visible: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        h = self._embed(x, visible, self.cond_mlp(self.cond_embed(cond)))  # (B, N, D)
        for block in self.blocks:
            h = block(h, self.rope_cos, self.rope_sin)
        h = self.norm(h)
        logits = self.cond_head(h)  # (B, N, q)
        log_marg = self.marginal_head(h)[..., 0].sum(-1)  # (B,) sum-pooled
        return logits, log_marg

    def site_logits(self, x: Tensor, visible: Tensor, cond_feat: Tensor, site: Tensor) -> Tensor:
        """``(B, q)`` conditional logits of one site per row: the last block and the head run for
        that token only (about half the cost of a full pass for two blocks). ``cond_feat`` is
        ``cond_mlp(cond_embed(cond))`` (B, D)."""
        h = self._embed(x, visible, cond_feat)
        for block in self.blocks[:-1]:
            h = block(h, self.rope_cos, self.rope_sin)
        h1 = self.blocks[-1].forward_one(h, self.rope_cos, self.rope_sin, site)  # (B, D)
        return self.cond_head(self.norm(h1))

    @torch.no_grad()
    def any_order_stepper(self, x: Tensor, visible: Tensor, cond: Tensor) -> _TransformerStepper:
        return _TransformerStepper(self, *self._check(x, visible, cond))


class _TransformerStepper:
    """Any-order sampling steps of the Transformer (:meth:`Model.any_order_stepper`): the
    condition embedding is computed once, and each step evaluates the last block and the output
    head for the generated site only (:meth:`MAMTransformer.site_logits`).

    **Shared prefixes.** A step's logits are a function of (condition, visible sites and their
    states, site) only, and many rows share them: every row of a condition at the first step, and
    with one order per condition (``order="fixed"``) every row with the same prefix, at most
    ``q^t`` of them at step ``t`` however many samples are drawn (far fewer in ordered phases). The
    stepper evaluates the network once per distinct row (``torch.unique``) whenever that saves at
    least a quarter of the rows, and hands each row its logits; the draws stay independent per row.
    """

    chunk = 8192  # rows per network evaluation (activations ~ chunk x N x 4 dim floats)

    def __init__(self, model: MAMTransformer, x: Tensor, visible: Tensor, cond: Tensor) -> None:
        self.model = model
        self.x, self.visible = x.clone(), visible.clone()
        self.cond_feat = model.cond_mlp(model.cond_embed(cond))  # (B, D)
        i_T, i_h = (torch.unique(c, return_inverse=True)[1] for c in cond.unbind(1))
        self.group = i_T * (len(cond) + 1) + i_h  # (B,) condition id (1-D unique: fast)

    def logits(self, rows: Tensor | None, site: Tensor) -> Tensor:
        x, visible, group = self.x, self.visible, self.group
        if rows is not None:
            x, visible, group = x[rows], visible[rows], group[rows]
        tok = torch.where(visible, x, self.model.n_states)  # (b, N): what the network sees
        key = torch.cat([group[:, None], site[:, None], tok], dim=1)
        uniq, first, inverse = _unique_rows(key)
        if 4 * len(uniq) > 3 * len(key):  # little shared: one pass over all rows
            return self._site_logits(x, visible, self.cond_feat if rows is None else self.cond_feat[rows], site)
        src = first if rows is None else rows[first]
        return self._site_logits(x[first], visible[first], self.cond_feat[src], site[first])[inverse]

    def _site_logits(self, x: Tensor, visible: Tensor, cond_feat: Tensor, site: Tensor) -> Tensor:
        """:meth:`MAMTransformer.site_logits` in chunks of :attr:`chunk` rows (bounded memory)."""
        c = self.chunk
        if len(x) <= c:
            return self.model.site_logits(x, visible, cond_feat, site)
        parts = (slice(s, s + c) for s in range(0, len(x), c))
        return torch.cat([self.model.site_logits(x[p], visible[p], cond_feat[p], site[p]) for p in parts])

    def observe(self, rows: Tensor | None, site: Tensor, a: Tensor) -> None:
        rows = torch.arange(self.x.shape[0], device=self.x.device) if rows is None else rows
        self.x[rows, site] = a
        self.visible[rows, site] = True


def _unique_rows(key: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct rows of a non-negative integer ``key`` (b, k): ``(distinct rows, index of one row
    holding each, inverse)`` with ``key[first][inverse] == key``.

    Exact and fast: columns are packed into 62-bit words next to the running row id (the id of
    the distinct prefix so far, < b), and each word is deduplicated with a 1-D ``torch.unique``
    (``unique(dim=0)`` is ~20x slower on 1e5 rows)."""
    b, k = key.shape
    ids = torch.zeros(b, dtype=torch.long, device=key.device)
    if b == 0:
        return key, ids, ids
    bits = [max(1, int(v).bit_length()) for v in key.max(0).values.tolist()]
    col = 0
    while col < k:
        acc, used = ids, max(1, (b - 1).bit_length())
        while col < k and used + bits[col] <= 62:
            acc = (acc << bits[col]) | key[:, col]
            used += bits[col]
            col += 1
        ids = torch.unique(acc, return_inverse=True)[1]
    first = torch.empty(int(ids.max()) + 1, dtype=torch.long, device=key.device)
    first.scatter_(0, ids, torch.arange(b, device=key.device))  # any one row per distinct key
    return key[first], first, ids
