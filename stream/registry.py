"""Small name -> factory registries; components are chosen by name, never silently replaced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

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
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} registry: the name {name!r} is already registered")
            self._items[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def build(self, name: str, *args: object, **kwargs: object) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
