"""Finding the modules whose outputs are explained, by their ``named_modules`` names."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import nn


class LayerNotFoundError(ValueError):
    """A target layer name is not a module of the model."""


def nearest_layer_names(model: nn.Module, name: str, count: int = 5) -> list[str]:
    """The module names of ``model`` closest to ``name`` (best first)."""
    names = [n for n, _ in model.named_modules() if n]
    return difflib.get_close_matches(name, names, n=count, cutoff=0.0)


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Map each target layer name to its module, in the given order.

    Raises:
        LayerNotFoundError: a name is not a module of ``model``; the message lists the nearest
            valid names.
        ValueError: no names, or a name given twice.
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no target layer given: name at least one module, e.g. 'layer4'")
    if len(set(names)) != len(names):
        raise ValueError(f"target layers repeat a name: {list(names)}")
    modules = dict(model.named_modules())
    resolved = {}
    for name in names:
        if not name or name not in modules:
            nearest = ", ".join(repr(n) for n in nearest_layer_names(model, name))
            raise LayerNotFoundError(
                f"unknown layer {name!r} in {type(model).__name__}; nearest valid names: {nearest}"
            )
        resolved[name] = modules[name]
    return resolved
