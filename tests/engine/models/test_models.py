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
    lookahead_snippets,
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


# --- look-ahead ---------------------------------------------------------------------------------

LOOKAHEAD = 3


def _pair(network: str, lookahead: int, **kw: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A network with a look-ahead and its strictly causal twin, with the same weights."""
    ahead = _net(network, embed_dim=16, window=8, lookahead=lookahead, **kw)
    causal = _net(network, embed_dim=16, window=8, **kw)
    causal.load_state_dict(ahead.state_dict())  # the look-ahead adds no parameter
    return ahead, causal


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_lookahead_output_ignores_inputs_after_t_plus_l(network: str) -> None:
    net = _net(network, embed_dim=16, window=8, lookahead=LOOKAHEAD)
    assert net.lookahead == LOOKAHEAD
    motion, geometry, valid = _inputs(2, 60, seed=11)
    valid[1, 20:23] = False
    base = _outputs(net, motion, geometry, valid)
    t0 = 37
    later = t0 + LOOKAHEAD + 1  # the first snippet an output at t0 must not see
    m2, g2, v2 = motion.clone(), geometry.clone(), valid.clone()
    m2[:, later:] += 5 * torch.randn_like(m2[:, later:])
    g2[:, later:] = torch.randn_like(g2[:, later:])
    v2[0, later + 2 :] = False
    pert = _outputs(net, m2, g2, v2)
    for name in OUTPUT_NAMES:
        assert torch.equal(base[name][:, : t0 + 1], pert[name][:, : t0 + 1]), name
        assert not torch.equal(base[name][:, t0 + 1 :], pert[name][:, t0 + 1 :]), name


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_lookahead_is_real_an_output_at_t_sees_snippet_t_plus_l(network: str) -> None:
    net = _net(network, embed_dim=16, window=8, lookahead=LOOKAHEAD)
    motion, geometry, valid = _inputs(1, 40, seed=12)
    base = _outputs(net, motion, geometry, valid)
    t0 = 25
    m2, g2 = motion.clone(), geometry.clone()
    m2[:, t0 + LOOKAHEAD] += 4.0
    g2[:, t0 + LOOKAHEAD] -= 4.0
    pert = _outputs(net, m2, g2, valid)
    assert all(torch.equal(base[n][:, :t0], pert[n][:, :t0]) for n in OUTPUT_NAMES)
    assert any(not torch.equal(base[n][:, t0], pert[n][:, t0]) for n in OUTPUT_NAMES)
    for name in ("tcam", "attention", "intensity", "action"):  # the scores themselves move
        assert not torch.equal(base[name][:, t0], pert[name][:, t0]), name


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_lookahead_is_the_causal_body_shifted_with_invalid_zero_padding(network: str) -> None:
    ahead, causal = _pair(network, LOOKAHEAD)
    assert ahead.receptive_field == causal.receptive_field  # history: unchanged by the look-ahead
    t, n = 30, LOOKAHEAD
    motion, geometry, valid = _inputs(2, t, seed=13)
    got = _outputs(ahead, motion, geometry, valid)
    pad = _outputs(
        causal,
        torch.cat([motion, torch.zeros(2, n, DM)], dim=1),
        torch.cat([geometry, torch.zeros(2, n, DG)], dim=1),
        torch.cat([valid, torch.zeros(2, n, dtype=torch.bool)], dim=1),
    )
    for name in OUTPUT_NAMES:
        assert got[name].shape == pad[name][:, n:].shape, name
        # The causal twin masks its position s + L by the padding's validity; up to T - L both agree.
        assert torch.equal(got[name][:, : t - n], pad[name][:, n:t]), name
    for name in ("tcam", "action", "embedding", "intensity_embedding"):  # never masked
        assert torch.equal(got[name], pad[name][:, n:]), name
    # Probabilities are masked by the scored snippet's validity: the last L (valid) are not zero
    # although the snippets L after them are the invalid padding.
    assert (got["attention"][:, t - n :] > 0).all() and (got["intensity"][:, t - n :] > 0).all()


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_lookahead_masks_by_the_validity_of_the_scored_snippet(network: str) -> None:
    net = _net(network, embed_dim=16, window=8, lookahead=LOOKAHEAD)
    motion, geometry, valid = _inputs(1, 30, seed=14)
    j = 12
    valid[0, j] = False
    motion[0, j] = 0.0
    geometry[0, j] = 0.0
    out = _outputs(net, motion, geometry, valid)
    for name in ("attention", "attention_motion", "attention_geometry", "intensity"):
        assert out[name][0, j] == 0, name  # nothing fires on the invalid snippet itself ...
        assert out[name][0, j - LOOKAHEAD] > 0, name  # ... but the one that sees it L ahead scores


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_lookahead_zero_is_the_unchanged_causal_forward(network: str) -> None:
    """L = 0 (the default) computes exactly the strictly causal forward it always did: the
    pre-look-ahead forward, written out here from the network's modules."""
    net = _net(network, embed_dim=16, window=8)
    assert net.config.lookahead == 0 and net.lookahead == 0
    motion, geometry, valid = _inputs(2, 40, seed=15)
    valid[0, 10:14] = False
    valid[1, -1] = False
    got = _outputs(net, motion, geometry, valid)
    with torch.no_grad():
        v = valid.to(motion.dtype)
        m = (motion - net.motion_mean) / net.motion_scale
        g = (geometry - net.geometry_mean) / net.geometry_scale
        o_m, o_g = net.fusion(m, g, valid)
        a_m = torch.sigmoid(net.attention_motion(o_m, valid)[0].squeeze(-1)) * v
        a_g = torch.sigmoid(net.attention_geometry(o_g, valid)[0].squeeze(-1)) * v
        x = torch.cat([o_m, o_g], dim=-1)
        for block in net.backbone:
            x = block(x, valid)
        emb = net.squeeze(x)
        i_logit, i_emb = net.intensity_branch(emb, valid)
        want = {
            "tcam": net.classifier(emb),
            "attention": 0.5 * (a_m + a_g),
            "attention_motion": a_m,
            "attention_geometry": a_g,
            "intensity": torch.sigmoid(i_logit.squeeze(-1)) * v,
            "action": net.action_branch(emb, valid)[0],
            "embedding": emb,
            "intensity_embedding": i_emb,
        }
    assert tuple(got) == OUTPUT_NAMES
    for name in OUTPUT_NAMES:
        assert torch.equal(got[name], want[name]), name


@pytest.mark.parametrize("network", ["mcwes", "gim"])
def test_lookahead_longer_than_the_sequence(network: str) -> None:
    """A sequence shorter than L: every score sees only the invalid padding ahead, and is finite."""
    net = _net(network, embed_dim=16, window=8, lookahead=8)
    motion, geometry, valid = _inputs(1, 3, seed=16)
    out = _outputs(net, motion, geometry, valid)
    for name in OUTPUT_NAMES:
        assert out[name].shape[:2] == (1, 3) and torch.isfinite(out[name]).all(), name


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch 2.x deprecates jit.trace
def test_lookahead_traces_without_baking_in_the_length() -> None:
    net = _net("gim", embed_dim=16, window=8, lookahead=2)
    with torch.no_grad():
        traced = torch.jit.trace(net, _inputs(2, 20, seed=17), strict=False)
        other = _inputs(1, 7, seed=18)
        want, got = net(*other), traced(*other)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"lookahead": -1}, r"lookahead=-1: must be an integer in \[0, 256\]"),
        ({"lookahead": 257}, r"lookahead=257: must be an integer in \[0, 256\]"),
        ({"lookahead": 1.0}, r"lookahead=1\.0: must be an integer"),
        ({"lookahead": True}, r"lookahead=True: must be an integer"),
        ({"lookahead": 2, "causal": False}, r"lookahead=2: a look-ahead applies to the causal network"),
    ],
)
def test_lookahead_config_validation(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NetworkConfig(**kw)  # type: ignore[arg-type]


def test_lookahead_config_defaults_and_round_trip() -> None:
    assert NetworkConfig().lookahead == 0
    assert NetworkConfig(causal=False).lookahead == 0  # the non-causal twin with no look-ahead
    old = NetworkConfig().to_dict()
    del old["lookahead"]  # a configuration (run.json, bundle.json) from before the look-ahead
    assert NetworkConfig.from_dict(old).lookahead == 0
    cfg = NetworkConfig(lookahead=256)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    assert _net("mcwes", causal=False).lookahead == 0


@pytest.mark.parametrize(
    ("seconds", "hops"), [(0, 0), (0.0, 0), (4 / 30, 1), (0.4, 3), (0.2667, 2), (256 * 4 / 30, 256)]
)
def test_lookahead_seconds_to_whole_hops(seconds: float, hops: int) -> None:
    assert lookahead_snippets(seconds, 4 / 30) == hops


@pytest.mark.parametrize(
    ("seconds", "match"),
    [
        (0.1, r"--lookahead-s=0\.1 s is 0\.750 snippets of hop_s=0\.133333 s: it must be a whole number"),
        (0.2, r"whole number of snippets, e\.g\. 0\.133333 s \(1\) or 0\.266667 s \(2\)"),
        (-0.1, r"--lookahead-s=-0\.1: must be a number of seconds >= 0"),
        (float("inf"), r"--lookahead-s=inf: must be a number of seconds >= 0"),
        ("1", r"--lookahead-s='1'"),
        (257 * 4 / 30, r"is 257 snippets .*at most 256"),
    ],
)
def test_lookahead_seconds_refused(seconds: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        lookahead_snippets(seconds, 4 / 30, "--lookahead-s")


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


@pytest.mark.parametrize(("t", "window"), [(1, 1), (5, 7), (17, 4), (64, 32), (100, 32)])
def test_banded_self_attention_equals_the_masked_form(t: int, window: int) -> None:
    from engine.models.layers import attention_mask, banded_self_attention, masked_self_attention

    g = torch.Generator().manual_seed(t * 31 + window)
    q = torch.randn(3, t, 8, generator=g)
    valid = torch.rand(3, t, generator=g) > 0.2
    valid[1] = False  # a sequence without a valid key: zeros, not NaN
    full = masked_self_attention(q, attention_mask(valid, window))
    torch.testing.assert_close(banded_self_attention(q, valid, window), full, atol=1e-6, rtol=1e-5)
