"""String-keyed registries: configs name models, data sets and objectives, and code looks them up.

An entry may be registered by a module of a higher package (CLIP's model and objective live in
``fairjax.clip``, which imports ``models`` and ``train``): the registry knows that module by name and
imports it when the entry is first looked up, as big_vision imports a model's module from its name. So
imports keep pointing one way and a config that names the entry still finds it.
"""

import importlib
import inspect
from typing import Any, Callable, Mapping


class Registry:
  """Names to factories, for one kind of thing ('model', 'data set', 'objective').

  ``elsewhere`` maps names registered by modules of higher packages to those modules (dotted paths).
  """

  def __init__(self, kind: str, elsewhere: Mapping[str, str] = ()):
    self.kind = kind
    self._items: dict[str, Callable[..., Any]] = {}
    self._elsewhere = dict(elsewhere)

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
    if name not in self._items and name in self._elsewhere:
      importlib.import_module(self._elsewhere[name])  # registers it
    if name not in self._items:
      raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
    return self._items[name]

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(set(self._items) | set(self._elsewhere)))

  def options(self, name: str) -> dict[str, Any]:
    """The keyword options of ``name``'s factory and their defaults (``inspect.Parameter.empty`` where
    there is none); empty when the factory takes ``**kwargs``, whose names cannot be known."""
    parameters = inspect.signature(self.get(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
      return {}
    return {p.name: p.default for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}

  def build(self, name: str, *args, **options) -> Any:
    """``name``'s factory called with ``args`` and ``options``; an option it does not take is an error
    naming the ones it does (a misspelt config option must not become a Python TypeError)."""
    factory = self.get(name)
    known = list(self.options(name))[len(args):]  # the leading ones are given positionally
    unknown = sorted(set(options) - set(known)) if known else []
    if unknown:
      raise ValueError(f"{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                       f"{', '.join(known)}")
    return factory(*args, **options)
