"""What every architecture's adapter shares: attaching the attention sites once, the capture, the forward.

An adapter knows its model's token layout: which attention modules exist, what row STAA reads in
each (``models.attention.Site``) and how a forward's rows become ``models.staa.AttentionRows``.
It never does STAA's maths.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from models.attention import Capture, Site, Taps, attach
from models.staa import AttentionRows


class VideoAdapter:
    """Subclasses set ``architecture`` and implement ``_attention_modules`` and ``attention_rows``;
    ``_route_attention`` sends the model's attention calls through ``models.attention.attend``."""

    architecture = ""
    num_frames: int
    frames_per_slot: int = 1  # frames a token spans (a tubelet's depth)
    grid: tuple[int, int]  # patches per frame, (h, w)

    def __init__(self, model: torch.nn.Module, implementation: str = "fused"):
        self.model = model
        self.taps = Taps(implementation)
        self._route_attention()
        for module, role, readout in self._attention_modules():
            attach(module, Site(role, readout, self.taps))

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def implementation(self) -> str:
        return self.taps.implementation

    @contextmanager
    def using(self, implementation: str):
        """Run the block with another attention implementation (the benchmark's eager oracle)."""
        previous = self.taps.implementation
        self.taps.implementation = implementation
        try:
            yield self
        finally:
            self.taps.implementation = previous

    def capture(self, keep_probabilities: bool = False, keep_grad: bool = False):
        """Context manager yielding the ``Capture`` one forward inside it fills (``models.attention``)."""
        return self.taps.capture(keep_probabilities, keep_grad)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, T, 3, H, W]``, on any device -> logits ``[B, num_labels]`` on the model's.
        The input moves to the model's device and dtype here, the one place it crosses (differentiably)."""
        parameter = next(self.model.parameters())
        pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype, non_blocking=True)
        return self.model(pixel_values=pixel_values).logits

    def read(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, AttentionRows, float]:
        """One forward under a capture: logits ``[B, C]``, the rows STAA reads, and the seconds spent
        reading them."""
        with self.capture() as capture:
            logits = self.forward(pixel_values)
        return logits, self.attention_rows(capture), capture.seconds

    def _route_attention(self) -> None:
        raise NotImplementedError

    def _attention_modules(self) -> list[tuple[torch.nn.Module, str, str]]:
        """(module ``attend`` is called with, role, readout) for every attention call, in forward order."""
        raise NotImplementedError

    def attention_rows(self, capture: Capture) -> AttentionRows:
        raise NotImplementedError
