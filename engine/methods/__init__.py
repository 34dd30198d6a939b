"""Training methods by name: the supervision and losses of each regime (``METHODS``).

A method is registered once; a second registration under the same name fails. Methods are
registered by import path: their names are known at once (a bundle's configuration is checked
against them), and a method's module, with torch, is imported when the method is first used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.methods.config import FullConfig, GimConfig, McwesConfig, MethodConfig, PwesConfig
from stream.errors import ConfigError
from stream.registry import Registry, lazy_attributes

if TYPE_CHECKING:
    from torch import nn

    from engine.methods.base import Method

METHODS = Registry["Method"]("method")
METHODS.register_lazy("full", "engine.methods.full:FullMethod")
METHODS.register_lazy("gim", "engine.methods.gim:GimMethod")
METHODS.register_lazy("mcwes", "engine.methods.mcwes:McwesMethod")
METHODS.register_lazy("pwes", "engine.methods.pwes:PwesMethod")

_LAZY_NAMES = {
    "Method": "engine.methods.base",
    "FullMethod": "engine.methods.full",
    "balanced_weights": "engine.methods.full",
    "GimMethod": "engine.methods.gim",
    "McwesMethod": "engine.methods.mcwes",
    "PwesMethod": "engine.methods.pwes",
}


__getattr__ = lazy_attributes(__name__, _LAZY_NAMES)


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
