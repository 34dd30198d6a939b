"""Training methods by name: the supervision and losses of each regime (``METHODS``).

A method is registered once; a second registration under the same name fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from engine.methods.base import Method, MethodConfig
from engine.methods.full import FullConfig, FullMethod, balanced_weights
from engine.methods.gim import GimConfig, GimMethod
from engine.methods.mcwes import McwesConfig, McwesMethod
from engine.methods.pwes import PwesConfig, PwesMethod
from stream.errors import ConfigError
from stream.registry import Registry

METHODS = Registry[Method]("method")
METHODS.register(FullMethod.name)(FullMethod)
METHODS.register(GimMethod.name)(GimMethod)
METHODS.register(McwesMethod.name)(McwesMethod)
METHODS.register(PwesMethod.name)(PwesMethod)


def build_method(
    name: str, network: nn.Module, config: MethodConfig | Mapping[str, Any] | None = None
) -> Method:
    """The method registered as `name`, for `network`.

    Raises:
        ConfigError: unknown name or a bad method configuration.
    """
    if name not in METHODS:
        raise ConfigError(f"method {name!r}: choose one of {', '.join(METHODS.names())}")
    return METHODS.build(name, config, network)


__all__ = [
    "METHODS",
    "FullConfig",
    "FullMethod",
    "GimConfig",
    "GimMethod",
    "McwesConfig",
    "McwesMethod",
    "Method",
    "MethodConfig",
    "PwesConfig",
    "PwesMethod",
    "balanced_weights",
    "build_method",
]
