"""The models one server serves, by name: ``--model NAME=DIR_OR_ID`` (repeatable; the first is the
default). A request names its model (``ClipRequest.model``, ``StreamConfig.model``,
``ModelInfoRequest.model``, OIP ``model_name``) by its served name or its model id; empty means the
default. Each model has its own engine (model thread, micro-batcher, robustness lane), so a batch
never mixes models; the memory budget, the admission limits and the robustness budget are the
server's, shared.

``call_model`` is the model the current RPC resolved to, for its access line, its error counter and
its span (one gRPC call runs in one task, so a context variable is per call).
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass

from staa import quoted

# An explicit name: what a client types into a request, a metrics label, a Ray Serve app name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_CALL_MODEL: ContextVar[str] = ContextVar("staa_call_model", default="")


class ModelNotFound(LookupError):
    """A request named a model this server does not serve."""


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model`` value: ``NAME=SOURCE`` or just ``SOURCE`` (registry name, directory or cached
    hub id; None = the shipped default). Without a name, the model is served under its model id."""

    source: str | None
    name: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> "ModelSpec":
        if text is None:
            return cls(None)
        name, equals, source = text.partition("=")
        if equals and NAME_PATTERN.fullmatch(name):
            if not source:
                raise ValueError(f"--model {text!r}: nothing after '=' (NAME=DIR_OR_ID)")
            return cls(source, name)
        if equals and not name:
            raise ValueError(f"--model {text!r}: empty name before '=' (NAME=DIR_OR_ID)")
        return cls(text)


def check_unique_names(specs: list[ModelSpec]) -> None:
    """Explicit names must differ (names taken from model ids are checked once the models load)."""
    named = [spec.name for spec in specs if spec.name is not None]
    for name in named:
        if named.count(name) > 1:
            raise ValueError(f"two models are named {name!r}; each --model NAME=... needs its own name")
    unnamed = [spec.source or "default" for spec in specs if spec.name is None]
    for source in unnamed:
        if unnamed.count(source) > 1:
            raise ValueError(f"{source!r} is served twice under one name; name one of them (--model NAME={source})")


def set_call_model(name: str) -> None:
    _CALL_MODEL.set(name)


def call_model() -> str:
    """The model the current RPC resolved to; "" before it resolved one (or when it never did)."""
    return _CALL_MODEL.get()


class ModelSet:
    """Served models by name, in ``--model`` order; each value is the model's engine (its ``loaded``
    model says its id)."""

    def __init__(self):
        self._by_name: dict = {}

    def add(self, name: str, engine) -> None:
        if name in self._by_name:
            raise ValueError(f"two models are served as {name!r}; name them apart with --model NAME=DIR_OR_ID")
        self._by_name[name] = engine

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def default(self):
        return next(iter(self._by_name.values()), None)

    def engines(self) -> list:
        return list(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def resolve(self, requested: str) -> tuple[str, object]:
        """``(name, engine)`` for a request's model field: "" is the default; a served name or a served
        model's id selects that model. The call's model (``call_model``) is set from it."""
        if not requested:
            name = next(iter(self._by_name))
        elif requested in self._by_name:
            name = requested
        else:
            by_id = [name for name, engine in self._by_name.items() if engine.loaded.model_id == requested]
            if not by_id:
                raise ModelNotFound(f"model {quoted(requested)} is not served here; this server serves "
                                    f"{', '.join(repr(name) for name in self._by_name)}")
            name = by_id[0]
        set_call_model(name)
        return name, self._by_name[name]
