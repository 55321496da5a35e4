"""String-keyed registries: configs name models, data sets and objectives, and code looks them up."""

from typing import Any, Callable


class Registry:
  """Names to factories, for one kind of thing ('model', 'data set', 'objective')."""

  def __init__(self, kind: str):
    self.kind = kind
    self._items: dict[str, Callable[..., Any]] = {}

  def register(self, name: str) -> Callable:
    """Decorator registering a factory under ``name``; a name is registered once."""

    def decorate(factory):
      if name in self._items:
        raise ValueError(f"{self.kind} {name!r} is already registered")
      self._items[name] = factory
      return factory

    return decorate

  def get(self, name: str) -> Callable[..., Any]:
    """The factory of ``name``; an unknown name is an error that lists the known ones."""
    if name not in self._items:
      raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
    return self._items[name]

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(self._items))
