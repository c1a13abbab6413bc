"""One adapter per architecture: its token layout and the hooks that read attention."""

from models.adapters.timesformer import AttentionRecord, TimesformerAdapter
from models.adapters.videomae import VideoMAEAdapter
from models.errors import UnsupportedModel

__all__ = ["AttentionRecord", "TimesformerAdapter", "VideoMAEAdapter", "adapter_for"]

_ADAPTERS = {"timesformer": TimesformerAdapter, "videomae": VideoMAEAdapter}


def adapter_for(model):
    """The adapter for a loaded HF video classifier, by its config's model_type."""
    adapter = _ADAPTERS.get(model.config.model_type)
    if adapter is None:
        raise UnsupportedModel(f"no STAA adapter for architecture {model.config.model_type!r}; supported: {', '.join(_ADAPTERS)}")
    return adapter(model)
