"""Gradient-based and perturbation baselines, through Captum (not re-written here).

Each wraps one Captum algorithm behind the shared interface: logits from a plain forward, the
target defaulting to the prediction, pixel attributions pooled to tubelets by ``pool_pixels``.
Integrated Gradients uses the all-zeros baseline in normalised space (the dataset-mean grey clip).
Grad-CAM runs on the last block's patch tokens: a view module turns ``[B, 1+N*T, D]`` into
``[B, D, 1+N*T]`` so Captum's channel weighting averages over tokens, as Grad-CAM averages over
pixels. Frame ablation (Captum FeatureAblation, one feature per frame, mean-grey replacement) only
says *when*: its spatial map is uniform and marked uninformative.

Letters: B batch, T frames, N = h*w, D hidden size.
"""

from __future__ import annotations

import torch
from captum.attr import FeatureAblation, InputXGradient, IntegratedGradients, LayerGradCam, Saliency

from staa_serve.models.pipeline import Attribution
from staa_serve.models.registry import LoadedModel
from staa_serve.models.xai.base import as_batch, from_tubelets, pool_pixels, resolve_target


def _logits(loaded: LoadedModel):
    return lambda pixel_values: loaded.model(pixel_values=pixel_values).logits


class PixelGradientMethod:
    """Saliency, InputXGradient or IntegratedGradients on the normalised pixels."""

    spatial = True

    def __init__(self, loaded: LoadedModel, name: str, n_steps: int = 50, internal_batch_size: int = 16):
        self.loaded, self.name = loaded, name
        forward = _logits(loaded)
        if name == "saliency":
            self.algorithm, self.options, self.passes = Saliency(forward), {"abs": True}, 2
        elif name == "input_x_gradient":
            self.algorithm, self.options, self.passes = InputXGradient(forward), {}, 2
        elif name.startswith("integrated_gradients"):
            self.algorithm = IntegratedGradients(forward)
            self.options = {"n_steps": n_steps, "internal_batch_size": internal_batch_size, "method": "gausslegendre"}
            self.passes = 1 + 2 * n_steps  # the prediction, then n_steps forward + backward
        else:
            raise ValueError(f"unknown pixel-gradient method {name!r}")

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        pixels = as_batch(clip, self.loaded)
        with torch.no_grad():
            logits = _logits(self.loaded)(pixels)  # [B, C]
        target = resolve_target(logits, target)
        with torch.enable_grad():
            attributions = self.algorithm.attribute(pixels.requires_grad_(True), target=target, **self.options)  # [B, T, 3, H, W]
        return from_tubelets(pool_pixels(attributions.detach(), self.loaded.grid), logits)


class _TokenView(torch.nn.Module):
    """Identity up to a transpose: ``[B, S, D]`` -> ``[B, D, S]`` so Captum sees D as the channels."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.transpose(1, 2)


class GradCamTokens:
    """Grad-CAM on the last TimeSformer block's output tokens."""

    name, passes, spatial = "grad_cam", 2, True

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.view = _TokenView()
        self.layer = loaded.model.timesformer.encoder.layer[-1]

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        pixels = as_batch(clip, self.loaded)
        with torch.no_grad():
            logits = _logits(self.loaded)(pixels)
        target = resolve_target(logits, target)
        # Route the last block's output through the view (and back) so Captum can hook the view.
        handle = self.layer.register_forward_hook(
            lambda module, inputs, output: (self.view(output[0]).transpose(1, 2),) + tuple(output[1:]))
        try:
            with torch.enable_grad():
                cam = LayerGradCam(_logits(self.loaded), self.view).attribute(
                    pixels.requires_grad_(True), target=target, relu_attributions=True)  # [B, 1, 1+N*T]
        finally:
            handle.remove()
        batch, frames = pixels.shape[:2]
        rows, cols = self.loaded.grid
        tokens = cam.detach()[:, 0, 1:]  # drop CLS: [B, N*T], ordered (patch, frame)
        scores = tokens.reshape(batch, rows * cols, frames).transpose(1, 2).reshape(batch, frames, rows, cols)
        return from_tubelets(scores, logits)


class FrameAblation:
    """Drop in p(target) when one frame is replaced by mean grey (Captum FeatureAblation)."""

    name, spatial = "frame_ablation", False

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.passes = 1 + loaded.num_frames
        self.algorithm = FeatureAblation(lambda pixels: _logits(loaded)(pixels).softmax(dim=-1))

    @torch.no_grad()
    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        pixels = as_batch(clip, self.loaded)
        logits = _logits(self.loaded)(pixels)
        target = resolve_target(logits, target)
        batch, frames = pixels.shape[:2]
        frame_ids = torch.arange(frames).reshape(1, frames, 1, 1, 1).expand_as(pixels)  # one feature per frame
        drops = self.algorithm.attribute(pixels, target=target, baselines=0.0, feature_mask=frame_ids,
                                         perturbations_per_eval=frames)  # [B, T, 3, H, W], constant per frame
        per_frame = drops[:, :, 0, 0, 0].clamp_min(0)  # [B, T]
        rows, cols = self.loaded.grid
        scores = per_frame[:, :, None, None].expand(batch, frames, rows, cols).contiguous()  # uniform inside a frame
        return from_tubelets(scores, logits)
