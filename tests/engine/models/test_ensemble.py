"""Network ensembles: members of one configuration, proposal scores averaged, still causal."""

from __future__ import annotations

import pytest
import torch

from engine.methods import build_method
from engine.models import NetworkConfig, NetworkEnsemble, build_ensemble, build_network, ensemble_scores
from stream.errors import ConfigError

CONFIG = NetworkConfig(network="gim", embed_dim=16, dilations=(1, 2), window=16, lookahead=1)


def inputs(t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(2, t, CONFIG.motion_dim, generator=g)  # (B, T, Dm)
    geometry = torch.randn(2, t, CONFIG.geometry_dim, generator=g)  # (B, T, Dg)
    return motion, geometry, torch.ones(2, t, dtype=torch.bool)


def test_scores_are_the_mean_of_the_members_scores() -> None:
    torch.manual_seed(0)
    ensemble = build_ensemble(CONFIG, 3).eval()
    assert isinstance(ensemble, NetworkEnsemble) and len(ensemble.members) == 3
    assert ensemble.receptive_field == ensemble.members[0].receptive_field
    method = build_method("gim", ensemble, {})
    x = inputs(40)
    with torch.no_grad():
        cls, act = ensemble_scores(ensemble, method, *x)
        alone = [method.score_tensors(m(*x)) for m in ensemble.members]
    torch.testing.assert_close(cls, torch.stack([c for c, _ in alone]).mean(0))
    torch.testing.assert_close(act, torch.stack([a for _, a in alone]).mean(0))
    # one network is scored as it always was
    with torch.no_grad():
        one = ensemble_scores(ensemble.members[0], method, *x)
    torch.testing.assert_close(one[1], alone[0][1])


def test_an_ensemble_output_at_t_ignores_inputs_after_t_plus_lookahead() -> None:
    torch.manual_seed(1)
    ensemble = build_ensemble(CONFIG, 2).eval()
    method = build_method("gim", ensemble, {})
    motion, geometry, valid = inputs(30)
    later = motion.clone()
    later[:, 20:] += 5.0
    with torch.no_grad():
        a = ensemble_scores(ensemble, method, motion, geometry, valid)[1]
        b = ensemble_scores(ensemble, method, later, geometry, valid)[1]
    ahead = CONFIG.lookahead
    torch.testing.assert_close(a[:, : 20 - ahead], b[:, : 20 - ahead])
    assert not torch.allclose(a[:, 20 - ahead :], b[:, 20 - ahead :])


def test_members_must_share_one_configuration_and_number_two_to_sixteen() -> None:
    assert not isinstance(build_ensemble(CONFIG, 1), NetworkEnsemble)
    with pytest.raises(ConfigError, match="configurations differ"):
        NetworkEnsemble([build_network(CONFIG), build_network(NetworkConfig(network="gim", embed_dim=32))])
    with pytest.raises(ConfigError, match="1 members"):
        NetworkEnsemble([build_network(CONFIG)])
    for bad in (0, 17, 2.0, True):
        with pytest.raises(ConfigError, match="members"):
            build_ensemble(CONFIG, bad)  # type: ignore[arg-type]
