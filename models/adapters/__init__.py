"""One adapter per architecture: its token layout and the rows of its attention STAA reads."""

from staa_serve.models.adapters.base import VideoAdapter
from staa_serve.models.adapters.timesformer import TimesformerAdapter
from staa_serve.models.adapters.videomae import VideoMAEAdapter
from staa_serve.models.adapters.vivit import VivitAdapter
from staa_serve.models.errors import UnsupportedModel

__all__ = ["TimesformerAdapter", "VideoAdapter", "VideoMAEAdapter", "VivitAdapter", "adapter_for", "ADAPTERS"]

ADAPTERS = {"timesformer": TimesformerAdapter, "videomae": VideoMAEAdapter, "vivit": VivitAdapter}


def adapter_for(model, implementation: str = "fused") -> VideoAdapter:
    """The adapter of a HF video classifier (by its config's model_type), built once per model: it routes
    the model's attention through ``models.attention.attend``. A second call returns the same adapter,
    set to ``implementation``."""
    existing = model.__dict__.get("staa_adapter")
    if existing is not None:
        existing.taps.implementation = implementation
        return existing
    adapter_class = ADAPTERS.get(model.config.model_type)
    if adapter_class is None:
        raise UnsupportedModel(f"no STAA adapter for architecture {model.config.model_type!r}; supported: {', '.join(ADAPTERS)}")
    adapter = adapter_class(model, implementation)
    model.__dict__["staa_adapter"] = adapter  # a plain attribute, like the sites
    return adapter
