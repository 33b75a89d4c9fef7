"""An export leaves the caller's torch model exactly as it found it, and keeps torch's own chatter
(warnings about torchvision ops it cannot register, deprecations inside torch) off the user's screen."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)
# torch.onnx warns that every torchvision op is missing, and torch.export that one of its own
# internals is deprecated: neither is the user's business.
_QUIET_LOGGERS = ("torch.onnx._internal.exporter._registration",)
_QUIET_WARNINGS = (r".*LeafSpec.*", r".*torchvision.*")

Export = TypeVar("Export", bound=Callable)


@contextlib.contextmanager
def caller_model_kept(model: nn.Module) -> Iterator[None]:
    """Restore ``model``'s train/eval mode, ``requires_grad`` flags, hooks and weights (parameters
    and buffers, such as BatchNorm's running statistics) on exit, whatever the block did to them."""
    modules = list(model.modules())
    modes = [module.training for module in modules]
    hooks = [{name: dict(getattr(module, name)) for name in _HOOK_DICTS if hasattr(module, name)} for module in modules]
    tensors = list(model.state_dict(keep_vars=True).values())
    flags = [tensor.requires_grad for tensor in tensors]
    versions = [tensor._version for tensor in tensors]
    copies = [tensor.detach().clone() for tensor in tensors]
    try:
        yield
    finally:
        for module, mode, saved in zip(modules, modes, hooks):
            module.training = mode
            for name, entries in saved.items():
                current = getattr(module, name)
                current.clear()
                current.update(entries)
        with torch.no_grad():
            for tensor, flag, version, copy in zip(tensors, flags, versions, copies):
                if tensor._version != version:
                    tensor.copy_(copy)
                if tensor.is_leaf:
                    tensor.requires_grad_(flag)


@contextlib.contextmanager
def quiet_torch_export() -> Iterator[None]:
    """Silence torch's export-time warnings that say nothing about the user's model."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for message in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def keeps_caller_model(export: Export) -> Export:
    """Decorate an export function whose first argument is the caller's model."""

    @functools.wraps(export)
    def wrapper(model: nn.Module, *args, **kwargs):
        with caller_model_kept(model), quiet_torch_export():
            return export(model, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
