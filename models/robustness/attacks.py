"""Attacks on a window, in pixel space (ARCHITECTURE §6).

Every attack is untargeted against the class the model predicts on the clean window, works on
pixels in [0, 1] *before* mean/std normalisation (the model sees ``from_unit_range`` of them) and
keeps ``x'`` inside the L-infinity ball of radius epsilon around ``x`` and inside [0, 1]:

- ``noise``: Gaussian noise with sigma = epsilon, clipped to +-epsilon: the forward-only control.
  It has the same L-infinity norm as FGSM's step, so "FGSM flips, noise does not" is about the
  direction of the perturbation, not its size.
- ``fgsm``: one signed-gradient step of size epsilon (Goodfellow et al., 2015).
- ``pgd``: a uniform random start in the ball, then ``steps`` signed-gradient steps of size
  ``step_size`` (default 2.5 * epsilon / steps), each projected back onto the ball and [0, 1]
  (Madry et al., 2018).

Batched: ``[B, T, 3, H, W]`` windows, one target per window, one gradient call per step for all.
Letters: B batch, T frames, H x W the model's input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

ATTACKS = ("noise", "fgsm", "pgd")
DEFAULT_EPSILON = 4.0  # /255
DEFAULT_PGD_STEPS = 5

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # [0, 1] pixels [B, T, 3, H, W] -> logits [B, C]


@dataclass(frozen=True)
class AttackSpec:
    """Which attack and how strong. ``epsilon`` and ``step_size`` are in /255 units of [0, 1] pixels."""

    kind: str = "fgsm"
    epsilon: float = DEFAULT_EPSILON
    steps: int = DEFAULT_PGD_STEPS
    step_size: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ATTACKS:
            raise ValueError(f"attack must be one of {ATTACKS}, got {self.kind!r}")
        if not 0.0 < self.epsilon <= 255.0:
            raise ValueError(f"epsilon must be in (0, 255] (/255 units), got {self.epsilon}")
        if self.kind == "pgd" and not 1 <= self.steps <= 100:
            raise ValueError(f"PGD steps must be in [1, 100], got {self.steps}")
        if self.step_size is not None and not 0.0 < self.step_size <= 255.0:
            raise ValueError(f"step_size must be in (0, 255] (/255 units), got {self.step_size}")

    @property
    def radius(self) -> float:
        """epsilon in [0, 1] pixel units."""
        return self.epsilon / 255.0

    @property
    def alpha(self) -> float:
        """PGD step in [0, 1] pixel units."""
        return (self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps) / 255.0

    @property
    def gradient_passes(self) -> int:
        """Forward + backward passes the attack itself costs (the explanation of x' is one more)."""
        return {"noise": 0, "fgsm": 2, "pgd": 2 * self.steps}[self.kind]


def _loss_gradient(logits_fn: LogitsFn, pixels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d CE(logits, target) / d pixels, summed over the batch (each window's gradient is its own)."""
    with torch.enable_grad():
        pixels = pixels.detach().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(logits_fn(pixels), target, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, pixels)  # inputs only: no weight gradients are computed
    return gradient


def _project(candidate: torch.Tensor, clean: torch.Tensor, radius: float) -> torch.Tensor:
    """Back onto the L-infinity ball around ``clean`` and into [0, 1]."""
    return torch.minimum(torch.maximum(candidate, clean - radius), clean + radius).clamp(0.0, 1.0)


def run_here(work: Callable[[], torch.Tensor]) -> torch.Tensor:
    return work()


def perturb(logits_fn: LogitsFn, pixels: torch.Tensor, target: torch.Tensor, spec: AttackSpec,
            run_pass: Callable[[Callable[[], torch.Tensor]], torch.Tensor] = run_here) -> torch.Tensor:
    """Adversarial (or noisy) windows ``x'`` for ``pixels`` ``[B, T, 3, H, W]`` in [0, 1], against ``target`` ``[B]``.

    ``run_pass(work)`` runs each gradient computation: a scheduler can hold the attack between
    passes and run them where it likes (the server's robustness lane runs them on the model's
    thread, between explanations, never inside one)."""
    clean = pixels.detach()
    radius = spec.radius
    generator = torch.Generator(device=clean.device).manual_seed(spec.seed)
    if spec.kind == "noise":
        noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype) * radius
        return _project(clean + noise, clean, radius)
    if spec.kind == "fgsm":
        gradient = run_pass(lambda: _loss_gradient(logits_fn, clean, target))
        return _project(clean + radius * gradient.sign(), clean, radius)
    start = torch.rand(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype) * 2 - 1
    adversarial = _project(clean + radius * start, clean, radius)
    for _ in range(spec.steps):
        current = adversarial
        step = spec.alpha * run_pass(lambda: _loss_gradient(logits_fn, current, target)).sign()
        adversarial = _project(adversarial + step, clean, radius)
    return adversarial.detach()
