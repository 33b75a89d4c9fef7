"""Choosing ONNX Runtime execution providers: CPU always, CUDA when it is really there."""

from __future__ import annotations

from collections.abc import Sequence

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
ALIASES = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA}


class ProviderUnavailableError(RuntimeError):
    """An execution provider was asked for that this onnxruntime or machine cannot give."""


def _unavailable(provider: str, available: Sequence[str]) -> ProviderUnavailableError:
    hint = " (install onnxruntime-gpu and check the CUDA driver)" if provider == CUDA else ""
    return ProviderUnavailableError(
        f"{provider} was asked for but this onnxruntime offers only {list(available)}{hint}"
    )


def select_providers(
    providers: str | Sequence[str] | None, available: Sequence[str] | None = None
) -> list[str]:
    """ORT provider names for a request.

    ``None`` means the best available: CUDA (with CPU fallback for unsupported nodes) when
    onnxruntime offers it, else CPU. ``"cpu"``, ``"cuda"`` or ORT provider names are taken as
    asked, and asking for one that is not available raises ProviderUnavailableError.
    """
    available = list(ort.get_available_providers() if available is None else available)
    if providers is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    requested = [providers] if isinstance(providers, str) else list(providers)
    if not requested:
        raise ValueError("providers is empty: name at least one, e.g. 'cpu'")
    names = [ALIASES.get(p.lower(), p) if isinstance(p, str) else p for p in requested]
    for name in names:
        if name not in available:
            raise _unavailable(name, available)
    if CUDA in names and CPU not in names:
        names.append(CPU)
    return names


def check_session_providers(session: ort.InferenceSession, requested: Sequence[str]) -> None:
    """ORT drops a provider silently when its libraries fail to load; refuse that instead."""
    active = session.get_providers()
    for name in requested:
        if name not in active:
            raise _unavailable(name, active)
