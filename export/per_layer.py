"""One option given for every target layer or per layer, as ``export_cam_model`` and
``augment_classifier`` take ``reshape`` (no torch: ``augment`` runs without it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

Option = TypeVar("Option")


def option_per_layer(
    option: Option | Mapping[str, Option] | None, layers: Sequence[str], name: str
) -> dict[str, Option]:
    """``option`` as ``{layer: value}`` for the target ``layers`` that have one.

    ``None`` gives none; a single value applies to every layer; a mapping names its layers, and
    a name that is not a target layer raises ``ValueError`` (``name`` says which argument).
    """
    if option is None:
        return {}
    if not isinstance(option, Mapping):
        return dict.fromkeys(layers, option)
    unknown = sorted(set(option) - set(layers))
    if unknown:
        raise ValueError(f"{name} given for {unknown}, which are not target layers {list(layers)}")
    return dict(option)
