"""Spotting networks: shapes, causality, receptive field, masking, tracing, config, registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.models import (
    NETWORKS,
    OUTPUT_NAMES,
    CausalConv1d,
    NetworkConfig,
    build_network,
    parameter_count,
)
from engine.models.layers import attention_mask, masked_running_mean, masked_self_attention
from engine.models.spotter import set_input_statistics
from stream.errors import ConfigError

DM = DG = 153


def _inputs(b: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(b, t, DM, generator=g)  # (B, T, Dm)
    geometry = torch.randn(b, t, DG, generator=g)  # (B, T, Dg)
    valid = torch.ones(b, t, dtype=torch.bool)  # (B, T)
    return motion, geometry, valid


def _net(network: str = "mcwes", **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(NetworkConfig(network=network, **kw)).eval()  # type: ignore[arg-type]


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_shapes_ranges_and_size(network: str) -> None:
    net = _net(network)
    motion, geometry, valid = _inputs(2, 40)
    with torch.no_grad():
        out = net(motion, geometry, valid)
    assert tuple(out) == OUTPUT_NAMES
    e = net.config.embed_dim
    expected = {
        "tcam": (2, 40, 3),
        "attention": (2, 40),
        "attention_motion": (2, 40),
        "attention_geometry": (2, 40),
        "intensity": (2, 40),
        "action": (2, 40, 2),
        "embedding": (2, 40, e),
        "intensity_embedding": (2, 40, e),
    }
    for name, shape in expected.items():
        assert tuple(out[name].shape) == shape, name
        assert torch.isfinite(out[name]).all(), name
    for name in ("attention", "attention_motion", "attention_geometry", "intensity"):
        assert ((out[name] >= 0) & (out[name] <= 1)).all(), name
    assert torch.allclose(out["attention"], 0.5 * (out["attention_motion"] + out["attention_geometry"]))
    assert parameter_count(net) < 1_000_000


def test_receptive_field_values() -> None:
    # CSCM: W + (k - 1); backbone dilations (1, 2): 2 + 4; branch head: 2.
    assert _net("mcwes").receptive_field == 32 + 2 + 2 + 4 + 2
    assert _net("mcwes", window=8, dilations=(1, 2, 4)).receptive_field == 8 + 2 + 2 + 4 + 8 + 2
    assert _net("gim").receptive_field == 1 + 2 + 4 + 2
    assert _net("mcwes", causal=False).receptive_field is None


def _outputs(net: torch.nn.Module, *args: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return net(*args)


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_causal_future_does_not_change_past(network: str) -> None:
    net = _net(network, window=16)
    motion, geometry, valid = _inputs(2, 60, seed=1)
    base = _outputs(net, motion, geometry, valid)
    t0 = 37
    m2, g2, v2 = motion.clone(), geometry.clone(), valid.clone()
    m2[:, t0:] += 5 * torch.randn_like(m2[:, t0:])
    g2[:, t0:] = torch.randn_like(g2[:, t0:])
    v2[0, t0 + 3 :] = False
    pert = _outputs(net, m2, g2, v2)
    for name in OUTPUT_NAMES:
        assert torch.equal(base[name][:, :t0], pert[name][:, :t0]), name
        assert not torch.equal(base[name][:, t0:], pert[name][:, t0:]), name


def test_non_causal_variant_sees_the_future() -> None:
    net = _net("mcwes", causal=False)
    motion, geometry, valid = _inputs(1, 60, seed=2)
    base = _outputs(net, motion, geometry, valid)
    m2, g2 = motion.clone(), geometry.clone()
    m2[:, 50:] += 3.0
    g2[:, 50:] -= 3.0
    pert = _outputs(net, m2, g2, valid)
    # Global mean and attention reach every snippet, including the first one.
    for name in OUTPUT_NAMES:
        assert not torch.allclose(base[name][:, :1], pert[name][:, :1], rtol=0, atol=1e-7), name


@pytest.mark.parametrize(("network", "window"), [("mcwes", 8), ("gim", 8)])
def test_receptive_field_is_exact(network: str, window: int) -> None:
    net = _net(network, window=window)
    rf = net.receptive_field
    assert rf is not None
    t = rf + 12
    last = t - 1
    motion, geometry, valid = _inputs(1, t, seed=3)
    base = _outputs(net, motion, geometry, valid)

    def at_last(j: int) -> dict[str, torch.Tensor]:
        m2, g2 = motion.clone(), geometry.clone()
        m2[:, j] += 4.0
        g2[:, j] -= 4.0
        return {k: v[:, last] for k, v in _outputs(net, m2, g2, valid).items()}

    outside = at_last(last - rf)  # one snippet older than the receptive field
    for name in OUTPUT_NAMES:
        assert torch.equal(outside[name], base[name][:, last]), name
    edge = at_last(last - rf + 1)  # the oldest snippet inside it
    assert any(not torch.equal(edge[n], base[n][:, last]) for n in OUTPUT_NAMES)


@pytest.mark.parametrize("causal", [True, False])
def test_invalid_snippet_features_are_ignored(causal: bool) -> None:
    net = _net("mcwes", window=12, causal=causal)
    motion, geometry, valid = _inputs(2, 30, seed=4)
    j = 14
    valid[:, j] = False
    motion[:, j] = 0.0
    geometry[:, j] = 0.0
    base = _outputs(net, motion, geometry, valid)
    m2, g2 = motion.clone(), geometry.clone()
    m2[:, j] = 100 * torch.randn_like(m2[:, j])
    g2[:, j] = 100 * torch.randn_like(g2[:, j])
    pert = _outputs(net, m2, g2, valid)
    for name in OUTPUT_NAMES:
        assert torch.equal(base[name], pert[name]), name
    # Nothing fires on an invalid snippet.
    assert torch.all(base["attention"][:, j] == 0)
    assert torch.all(base["intensity"][:, j] == 0)


def test_all_invalid_is_finite() -> None:
    net = _net("mcwes")
    motion, geometry, valid = _inputs(1, 20)
    out = _outputs(net, motion, geometry, torch.zeros_like(valid))
    for name in OUTPUT_NAMES:
        assert torch.isfinite(out[name]).all(), name
    assert torch.all(out["attention"] == 0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch 2.x deprecates jit.trace
@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_jit_trace_reproduces_forward(network: str) -> None:
    net = _net(network, window=8)
    motion, geometry, valid = _inputs(2, 24, seed=5)
    valid[1, 5:9] = False
    with torch.no_grad():
        traced = torch.jit.trace(net, (motion, geometry, valid), strict=False)
        expected = net(motion, geometry, valid)
        got = traced(motion, geometry, valid)
        # A different length and validity pattern: no value-dependent control flow was baked in.
        m2, g2, v2 = _inputs(1, 31, seed=6)
        v2[0, :4] = False
        expected2 = net(m2, g2, v2)
        got2 = traced(m2, g2, v2)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)
        torch.testing.assert_close(got2[name], expected2[name], rtol=0, atol=1e-6)


def test_backward_reaches_every_parameter() -> None:
    net = build_network(NetworkConfig(embed_dim=16, window=4))
    net.train()
    motion, geometry, valid = _inputs(2, 12, seed=7)
    out = net(motion, geometry, valid)
    loss = sum(v.float().mean() for v in out.values())
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


# --- layers -------------------------------------------------------------------------------------


def test_causal_conv_left_padding_and_field() -> None:
    torch.manual_seed(0)
    conv = CausalConv1d(3, 4, kernel_size=3, dilation=2)
    assert conv.receptive_field == 5
    x = torch.randn(1, 20, 3)  # (B, T, C)
    y = conv(x)
    assert y.shape == (1, 20, 4)
    x2 = x.clone()
    x2[:, 10] += 1.0
    y2 = conv(x2)
    changed = (y2 - y).abs().sum(-1)[0] > 0  # (T,)
    assert changed.nonzero().flatten().tolist() == [10, 12, 14]
    centred = CausalConv1d(3, 4, kernel_size=3, dilation=2, causal=False)
    assert centred(x).shape == (1, 20, 4)


def test_masked_running_mean_matches_direct_loop() -> None:
    x = torch.randn(2, 15, 3)
    valid = torch.rand(2, 15) > 0.3
    valid[0, :5] = False
    w = 4
    got = masked_running_mean(x, valid, w)
    for b in range(2):
        for t in range(15):
            lo = max(0, t - w + 1)
            sel = x[b, lo : t + 1][valid[b, lo : t + 1]]
            ref = sel.mean(0) if len(sel) else torch.zeros(3)
            torch.testing.assert_close(got[b, t], ref)
    glob = masked_running_mean(x, valid, w, causal=False)
    torch.testing.assert_close(glob[1, 0], x[1][valid[1]].mean(0))


def test_masked_attention_window_and_empty_rows() -> None:
    valid = torch.tensor([[False, True, True, False, True]])
    allowed = attention_mask(valid, window=2)
    assert allowed[0].int().tolist() == [
        [0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 1],
    ]
    q = torch.randn(1, 5, 6)
    out = masked_self_attention(q, allowed)
    assert torch.isfinite(out).all()
    assert torch.all(out[0, 0] == 0)  # no allowed key -> zeros, not NaN
    torch.testing.assert_close(out[0, 1], q[0, 1])  # one key -> that key
    torch.testing.assert_close(out[0, 3], q[0, 2])


# --- config and registry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("embed_dim", 0),
        ("embed_dim", 8.0),
        ("window", 0),
        ("kernel_size", 16),
        ("motion_dim", True),
        ("dilations", (1, 0)),
        ("dilations", "12"),
        ("causal", 1),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("network", ""),
    ],
)
def test_config_rejects_bad_values_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        NetworkConfig(**{key: value})  # type: ignore[arg-type]


def test_config_dict_round_trip_frozen_and_unknown_keys() -> None:
    cfg = NetworkConfig.from_dict({"network": "gim", "dilations": [1, 2, 4], "window": 16})
    assert cfg.dilations == (1, 2, 4)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    hash(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.window = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="windw"):
        NetworkConfig.from_dict({"windw": 8})
    with pytest.raises(ConfigError, match="network"):
        build_network(NetworkConfig(network="nope"))


def test_registry_names_and_refuses_duplicates() -> None:
    assert NETWORKS.names() == ["gim", "mcwes"]
    with pytest.raises(ValueError, match="already registered"):
        NETWORKS.register("mcwes")(lambda config: None)


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_input_norm_standardises_with_stored_training_statistics(network: str) -> None:
    torch.manual_seed(0)
    cfg = NetworkConfig(network=network, embed_dim=16, input_norm=True, dropout=0.0)
    net = build_network(cfg).eval()
    motion = 3.0 + 5.0 * torch.randn(200, cfg.motion_dim)  # (N, Dm)
    geometry = -1.0 + 0.5 * torch.randn(200, cfg.geometry_dim)  # (N, Dg)
    geometry[:, 0] = 2.0  # a constant feature keeps scale 1
    set_input_statistics(net, motion, geometry)
    assert torch.allclose(net.motion_mean, motion.mean(0), atol=1e-5)
    assert torch.allclose(net.motion_scale, motion.std(0), atol=1e-4)
    assert net.geometry_scale[0] == 1.0
    # The statistics travel with the weights (bundles, exported graphs).
    assert {"motion_mean", "motion_scale", "geometry_mean", "geometry_scale"} <= set(net.state_dict())
    # The network equals its un-normalised twin fed standardised features.
    plain = build_network(dataclasses.replace(cfg, input_norm=False)).eval()
    stats = ("motion_mean", "motion_scale", "geometry_mean", "geometry_scale")
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k not in stats})
    m, g = motion[None, :32], geometry[None, :32]  # (1, 32, D)
    valid = torch.ones(1, 32, dtype=torch.bool)
    a = net(m, g, valid)["tcam"]
    m_std = (m - net.motion_mean) / net.motion_scale
    b = plain(m_std, (g - net.geometry_mean) / net.geometry_scale, valid)["tcam"]
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="input_norm"):
        set_input_statistics(plain, motion, geometry)
