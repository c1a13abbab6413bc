"""One adapter per architecture: its token layout and the hooks that read attention."""

from models.adapters.timesformer import AttentionRecord, TimesformerAdapter

__all__ = ["AttentionRecord", "TimesformerAdapter", "adapter_for"]


def adapter_for(model):
    """The adapter for a loaded HF video classifier (TimeSformer for now)."""
    return TimesformerAdapter(model)
