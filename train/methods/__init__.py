"""Method registry: a method is a `Method` subclass registered under its name.

Later families (reconstruction: MAST/LIIR/STT; transformation: UVC/ContrastCorr) register here the
same way and reuse the data layer, the augmentation pipelines and the trainer unchanged.
"""
from __future__ import annotations

from engine.errors import ConfigError

from .base import Method, MethodOutput

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} has no method name")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    _load_builtin()
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(None, f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})") from None


def method_names() -> list[str]:
    _load_builtin()
    return sorted(METHODS)


def _load_builtin() -> None:
    from . import crw, jstg, liir, mast, stt, uvc, uvc_ae  # noqa: F401  (import registers them)


__all__ = ["Method", "MethodOutput", "METHODS", "register", "get_method", "method_names"]
