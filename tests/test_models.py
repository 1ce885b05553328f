"""Architectures: registry, masking (the autoregressive property), 3D boxes, RoPE equivariance."""

from __future__ import annotations

import pytest
import torch
from conftest import BOX, TINY, assert_translation_equivariant

from lattherm.lattices import Lattice
from lattherm.models import (
    MODEL_NAMES,
    MADEConfig,
    Model,
    build_from_spec,
    build_model,
    model_config_from_dict,
)
from lattherm.models.transformer import MAMTransformer, TransformerConfig
from lattherm.systems import IsingSystem

pytestmark = pytest.mark.usefixtures("float64_one_thread")


def tiny(name: str, system, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return build_model(name, system=system, cond_box=BOX, config=TINY[name])


def random_cond(B: int, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(B, 2, generator=gen, dtype=torch.float64)
    return torch.stack([1.0 + 3.0 * u[:, 0], -1.0 + 2.0 * u[:, 1]], dim=1)


def test_registry_names_and_configs():
    assert set(MODEL_NAMES) == {"fo-arm-mlp", "ao-arm-mlp", "mam-mlp", "mam-transformer", "ao-transformer", "twobo",
                                "fo-pixelcnn", "mam-gnn", "mam-tt"}
    cfg = model_config_from_dict("fo-arm-mlp", {"channels": 5})
    assert cfg == MADEConfig(channels=5)
    with pytest.raises(ValueError, match="is unknown"):
        model_config_from_dict("mam-transformer", {"depth": 3})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("made", system=IsingSystem(L=3), cond_box=BOX)
    with pytest.raises(TypeError, match="takes a MADEConfig"):
        model_config_from_dict("fo-arm-mlp", TransformerConfig())
    with pytest.raises(ValueError, match="cond_box"):
        build_model(
            "ao-arm-mlp",
            system=IsingSystem(L=3),
            cond_box=((0.0, 1.0), (0.0, 0.0)),
            config=TINY["ao-arm-mlp"],
        )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_spec_rebuilds_the_same_model(name, gen):
    system = IsingSystem(L=3)
    model = tiny(name, system)
    spec = model.spec()
    clone = build_from_spec(spec, system=system)
    clone.load_state_dict(model.state_dict())
    x = torch.randint(0, 2, (4, 9), generator=gen)
    vis = torch.rand(4, 9, generator=gen) < 0.5
    c = random_cond(4, gen)
    assert torch.equal(model.conditional_logits(x, vis, c), clone.conditional_logits(x, vis, c))
    assert model.fixed_order == (name in ("fo-arm-mlp", "twobo", "fo-pixelcnn"))
    assert model.has_marginal == name.startswith("mam")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_invisible_sites_do_not_matter(name, gen):
    """Outputs depend on x only through the visible sites (random visible sets and conditions)."""
    model = tiny(name, IsingSystem(L=3))
    B, N = 32, 9
    x = torch.randint(0, 2, (B, N), generator=gen)
    vis = torch.rand(B, N, generator=gen) < torch.rand(B, 1, generator=gen)
    c = random_cond(B, gen)
    x2 = torch.where(vis, x, torch.randint(0, 2, (B, N), generator=gen))
    assert (x2 != x).any()
    torch.testing.assert_close(
        model.conditional_logits(x2, vis, c),
        model.conditional_logits(x, vis, c),
        rtol=0,
        atol=1e-12,
    )
    # ... while the visible sites and the condition do matter
    x3 = torch.where(vis, 1 - x, x)
    assert not torch.allclose(
        model.conditional_logits(x3, vis, c), model.conditional_logits(x, vis, c)
    )
    c2 = c + torch.tensor([0.5, 0.3])
    assert not torch.allclose(
        model.conditional_logits(x, vis, c2), model.conditional_logits(x, vis, c)
    )
    if model.has_marginal:
        torch.testing.assert_close(
            model.log_marginal(x2, vis, c), model.log_marginal(x, vis, c), rtol=0, atol=1e-12
        )
        logits, lm = model.heads(x, vis, c)
        assert logits.shape == (B, N, 2) and lm.shape == (B,)
    else:
        with pytest.raises(NotImplementedError):
            model.log_marginal(x, vis, c)


def test_made_is_autoregressive_in_raster_order(gen):
    """FO-ARM with everything visible: logits at position j ignore the sites at positions >= j."""
    model = tiny("fo-arm-mlp", IsingSystem(L=3))
    B, N = 8, 9
    x = torch.randint(0, 2, (B, N), generator=gen)
    c = random_cond(B, gen)
    ones = torch.ones(B, N, dtype=torch.bool)
    base = model.conditional_logits(x, ones, c)
    for j in range(N):
        x2 = x.clone()
        x2[:, j:] = torch.randint(0, 2, (B, N - j), generator=gen)
        torch.testing.assert_close(
            model.conditional_logits(x2, ones, c)[:, : j + 1], base[:, : j + 1], rtol=0, atol=1e-12
        )
    # the first site's conditional depends on the condition
    c2 = c.clone()
    c2[:, 1] = -c2[:, 1]
    assert not torch.allclose(model.conditional_logits(x, ones, c2)[:, 0], base[:, 0])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_3d_box(name, gen):
    """Every architecture runs on a 3D box (CuAu-like, 2x2x3 primitive cells)."""
    lattice = Lattice(shape=(2, 2, 3))
    from lattherm.models import _REGISTRY

    cls, cfg_cls = _REGISTRY[name]
    torch.manual_seed(0)
    if cls.uses_couplings == "always":  # two-body models: the couplings of a two-body system
        with pytest.raises(TypeError, match="couplings"):
            cls(lattice=lattice, n_states=2, cond_box=((300.0, 1500.0), (-0.2, 0.2)), config=cfg_cls(**TINY[name]))
        return
    model = cls(
        lattice=lattice,
        n_states=2,
        cond_box=((300.0, 1500.0), (-0.2, 0.2)),
        config=cfg_cls(**TINY[name]),
    )
    x = torch.randint(0, 2, (5, 12), generator=gen)
    vis = torch.rand(5, 12, generator=gen) < 0.5
    c = torch.tensor([[600.0, 0.05]]).expand(5, 2)
    out = model.conditional_logits(x, vis, c)
    assert out.shape == (5, 12, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3)], ids=["3x4", "2x2x3"])
def test_transformer_periodic_rope_translation_equivariance(shape, gen):
    lattice = Lattice(shape=shape)
    N = lattice.n_sites
    cfg = TransformerConfig(dim=24, n_blocks=2, n_heads=2, mlp_ratio=2, rope_k=2, n_freq=2)
    torch.manual_seed(1)
    model = MAMTransformer(lattice=lattice, n_states=2, cond_box=BOX, config=cfg)
    B = 6
    x = torch.randint(0, 2, (B, N), generator=gen)
    vis = torch.rand(B, N, generator=gen) < 0.6
    assert_translation_equivariant(model, lattice, x, vis, random_cond(B, gen))


def test_transformer_rejects_too_many_rope_dims():
    with pytest.raises(ValueError, match="periodic RoPE needs"):
        MAMTransformer(
            lattice=Lattice(shape=(8, 8)),
            n_states=2,
            cond_box=BOX,
            config=TransformerConfig(dim=16, n_heads=2, rope_k=4),
        )
