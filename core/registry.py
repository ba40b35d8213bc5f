"""One registry type for every extension point (stages, rater backends, prune strategies).

An extension registers itself where it is defined (``@STRATEGIES.register("random", needs=("clusters",))``), so
adding one is one new module plus its test: the config's allowed values, the CLI's lists, the report's strategy
list and the executors' GPU placement are read from the registries, never from lists kept in sync by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from winnow.core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered extension: its name, the object (a class or a function) and what it declared."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        """Declared metadata first, then the registered object's own attributes."""
        if key in ("name", "obj", "meta") or key.startswith("__"):
            raise AttributeError(key)
        if key in self.meta:
            return self.meta[key]
        return getattr(self.obj, key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the registered object (construct the class, run the function)."""
        return self.obj(*args, **kwargs)


class Registry(Generic[T]):
    """Named extensions of one kind: ``registry[name]`` is the ``Entry``; iterating gives the names.

    Names come in registration order, or by the ``order`` metadata when ``ordered`` (stages: the order in which
    ``winnow run`` executes them, so a new stage slots in by its number, not by import order).

    Args:
        kind: what is registered, for messages (``"prune strategy"``).
        key: the config key that selects one (``"prune.strategy"``), named in errors.
        ordered: sort by the ``order`` metadata (every entry must then declare it).
    """

    def __init__(self, kind: str, key: str, ordered: bool = False):
        self.kind = kind
        self.key = key
        self.ordered = ordered
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``name`` with ``meta``."""

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.ordered and "order" not in meta:
                raise ValueError(f"{self.kind} {name!r} must declare its order")
            self._entries[name] = Entry(name, obj, dict(meta))
            if self.ordered:
                self._entries = dict(sorted(self._entries.items(), key=lambda kv: kv[1].meta["order"]))
            return obj

        return add

    def __getitem__(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            allowed = ", ".join(self._entries) or "none registered"
            raise ConfigError(f"{self.key}: unknown {self.kind} {name!r}; allowed: {allowed}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def where(self, **meta: Any) -> tuple[str, ...]:
        """Names of the entries whose metadata has every given value (``where(gpu=True)``)."""
        return tuple(e.name for e in self.entries() if all(e.meta.get(k) == v for k, v in meta.items()))
