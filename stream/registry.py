"""Small name -> factory registries; components are chosen by name, never silently replaced.

A factory may also be registered by its import path (`Registry.register_lazy`): the name is known
at once, the module is imported on the first `get`. That keeps heavy dependencies (torch for the
training methods and the torch backend) off the import path of what does not use them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from stream.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories that refuses duplicate names.

    Example:
        FLOWS = Registry[FlowEstimator]("optical flow")

        @FLOWS.register("dis")
        class DISFlow(FlowEstimator): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T] | str] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            held = self._items.get(name)
            # The module a lazy entry names registers its factory itself when it is imported.
            if held is not None and held != _path_of(factory):
                raise ValueError(f"{self.kind} registry: the name {name!r} is already registered")
            self._items[name] = factory
            return factory

        return decorate

    def register_lazy(self, name: str, path: str) -> None:
        """Register the factory at ``"package.module:Attribute"``, imported on first use.

        Raises:
            ValueError: the name is taken, or the path is not ``module:attribute``.
        """
        if name in self._items:
            raise ValueError(f"{self.kind} registry: the name {name!r} is already registered")
        module, _, attr = path.partition(":")
        if not module or not attr:
            raise ValueError(f"{self.kind} registry: {path!r} is not 'module:attribute'")
        self._items[name] = path

    def get(self, name: str) -> Callable[..., T]:
        try:
            item = self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}"
            ) from None
        if isinstance(item, str):
            module, _, attr = item.partition(":")
            factory = getattr(importlib.import_module(module), attr)
            self._items[name] = item = factory
        return item

    def build(self, name: str, *args: object, **kwargs: object) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


def lazy_attributes(module: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` (PEP 562) that imports each name from its module on first use.

    Args:
        module: the package's ``__name__`` (for the error message).
        where: attribute name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        source = where.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return getattr(importlib.import_module(source), name)

    return __getattr__


def _path_of(factory: object) -> str:
    """``module:qualname`` of a factory, as `Registry.register_lazy` names it."""
    return f"{getattr(factory, '__module__', '')}:{getattr(factory, '__qualname__', '')}"
