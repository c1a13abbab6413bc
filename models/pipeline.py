"""From prepared windows to explanations: one forward pass reading STAA's rows, STAA, post-processing.

``Staa`` is the attribution method (Captum-style ``attribute``); ``ExplanationPipeline`` adds
what a served explanation carries: top-k, quantised heatmaps, timings and provenance.
Letters: B batch, T frames, N = h*w patches, C classes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from staa_serve.kernels.threshold_focus import threshold_focus
from staa_serve.models.devices import synchronise
from staa_serve.models.preprocess import CropBox, model_input
from staa_serve.models.registry import LoadedModel
from staa_serve.models.staa import StaaParams, staa_maps
from staa_serve.models.windowing import PreparedWindow
from staa import package_version


def code_version() -> str:
    return package_version()


@dataclass
class Attribution:
    """What every attribution method returns.

    Attributes:
        spatial: ``[B, T, h, w]`` on the model's patch grid, each frame summing to 1.
        temporal: ``[B, T]`` frame importance summing to 1.
        logits: ``[B, C]`` from the same forward pass.
        forward_ms: model forward time, STAA's row reads excluded.
        attribution_ms: STAA's row reads beside the attention + STAA's maths.
    """

    spatial: torch.Tensor
    temporal: torch.Tensor
    logits: torch.Tensor
    forward_ms: float = 0.0
    attribution_ms: float = 0.0


class Staa:
    """STAA from the model's own attention, read during the inference forward pass (``params.method``:
    ``"staa"``, the paper's, or ``"staa_class"``, class-sensitive; ``models/staa.py``)."""

    def __init__(self, loaded: LoadedModel, params: StaaParams = StaaParams()):
        self.loaded = loaded
        self.adapter = loaded.adapter
        self.params = params
        self.name = params.method

    def attribute(self, clip: torch.Tensor, target: int | torch.Tensor | None = None) -> Attribution:
        """Explain ``clip`` ``[T, 3, H, W]`` or ``[B, T, 3, H, W]`` (normalised pixels) for class ``target``
        (an int, ``[B]`` classes, or None: the predicted class). STAA's maps do not depend on the class;
        ``staa_class``'s do."""
        if clip.dim() == 4:
            clip = clip.unsqueeze(0)  # [T, 3, H, W] -> [1, T, 3, H, W]
        if clip.dim() != 5 or clip.shape[1] != self.loaded.num_frames:
            raise ValueError(f"clip must be [B, {self.loaded.num_frames}, 3, H, W], got {list(clip.shape)}")
        if isinstance(target, int):
            target = torch.full((clip.shape[0],), target, dtype=torch.long)
        return self.attribute_batch(clip.float(), targets=target)

    @torch.inference_mode()
    def attribute_batch(self, pixel_values: torch.Tensor, params: StaaParams | None = None,
                        targets: torch.Tensor | None = None) -> Attribution:
        """``attribute`` for a batch already in the model's layout, float ``[B, T, 3, H, W]`` (the served
        pipeline, robustness scoring, evaluation), with ``params`` in place of the method's own.
        ``targets`` ``[B]`` (staa_class only) override ``params.target_class``."""
        params = params or self.params
        batch, frames = pixel_values.shape[:2]
        if targets is None and params.target_class is not None:
            targets = torch.full((batch,), params.target_class, dtype=torch.long)
        started = time.perf_counter()
        logits, rows, read_seconds = self.adapter.read(  # [B, C]; [L, B, T', N] and [L, B, N, T']
            pixel_values, targets, class_sensitive=params.method == "staa_class")
        synchronise(self.loaded.device)  # the results are read right after anyway: the wait costs nothing
        maths_started = time.perf_counter()
        spatial, temporal = staa_maps(rows, params)  # [B, T, N], [B, T]
        synchronise(self.loaded.device)
        maths_seconds = time.perf_counter() - maths_started
        return Attribution(
            spatial=spatial.reshape(batch, frames, *self.loaded.grid),  # [B, T, N] -> [B, T, h, w]
            temporal=temporal,
            logits=logits.float(),
            forward_ms=(maths_started - started - read_seconds) * 1e3,
            attribution_ms=(read_seconds + maths_seconds) * 1e3,
        )


@dataclass
class ClassScore:
    class_id: int
    label: str
    probability: float


@dataclass
class WindowTimings:
    """Where one window's time went, in milliseconds (a batch's shared costs divided by its size)."""

    decode_ms: float = 0.0  # decoding + preprocessing the frames this window added
    queue_ms: float = 0.0  # waiting for its forward (set by the server)
    forward_ms: float = 0.0  # the model's forward, STAA's row reads excluded
    attribution_ms: float = 0.0  # STAA's row reads beside the attention + STAA's maths
    postprocess_ms: float = 0.0  # thresholding, focusing, quantisation, top-k
    total_ms: float = 0.0  # decode to explanation ready (set by the server)
    replica_ms: float = 0.0  # inside a Ray replica, when one explained it


@dataclass(frozen=True)
class Provenance:
    """What produced an explanation: enough to reproduce it."""

    model_id: str
    weights_sha256: str
    code_version: str
    params_hash: str


@dataclass
class WindowExplanation:
    """One served explanation (converted to protobuf in exactly one place, server/convert.py)."""

    index: int
    source_frames: list[int]
    pts: list[float]
    padded: bool
    aligned_to_end: bool
    topk: list[ClassScore]
    heatmaps: np.ndarray  # uint8 [T, h, w]
    scale: np.ndarray  # float32 [T]
    mass: np.ndarray  # float32 [T]
    temporal: np.ndarray  # float32 [T], sums to 1
    crop: CropBox
    source_size: tuple[int, int]
    params: StaaParams
    timings: WindowTimings
    provenance: Provenance
    target_class: int = 0  # the class the maps explain: params.target_class, else the prediction
    method: str = "staa"  # what made the maps: params.method, or a gradient method (server/robustness_lane.py)


class ExplanationPipeline:
    """Batches prepared windows through ``Staa`` and post-processes the maps."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.staa = Staa(loaded)

    def pixels(self, windows: list[PreparedWindow]) -> torch.Tensor:
        """The windows' uint8 crops -> normalised model input ``[B, T, 3, H, W]`` on the model's device."""
        frames = torch.stack([window.frames for window in windows])  # B x [T, H, W, 3] -> [B, T, H, W, 3] uint8
        return model_input(frames, self.loaded.processor, self.loaded.device)

    def explain(self, windows: list[PreparedWindow], params: StaaParams, top_k: int = 5) -> list[WindowExplanation]:
        """Explain a batch of windows in one forward pass; returns one explanation per window."""
        attribution = self.staa.attribute_batch(self.pixels(windows), params)
        return self.finish(windows, attribution, params, top_k)

    def finish(self, windows: list[PreparedWindow], attribution: Attribution, params: StaaParams, top_k: int = 5,
               method: str | None = None) -> list[WindowExplanation]:
        """Post-process any method's ``attribution`` of ``windows``: thresholding, focusing, quantisation,
        top-k, timings and provenance; ``method`` names what made the maps (default: ``params.method``),
        which explain ``params.target_class`` or else the prediction."""
        started = time.perf_counter()
        batch, frames, height, width = attribution.spatial.shape
        focused = threshold_focus(
            attribution.spatial.reshape(batch, frames, height * width),  # [B, T, h, w] -> [B, T, N]
            (height, width), mode=params.threshold_mode, kappa=params.kappa,
            percentile=params.percentile, gamma=params.gamma, smooth=params.smooth,
        )
        probabilities = attribution.logits.softmax(dim=-1)  # [B, C]
        top_values, top_ids = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)  # [B, k]
        # To the host once: uint8 grids and small vectors (the edge where results leave the device).
        quantized, scale, mass, temporal, top_values, top_ids = (tensor.cpu() for tensor in (
            focused.quantized, focused.scale, focused.mass, attribution.temporal, top_values, top_ids))
        postprocess_ms = (time.perf_counter() - started) * 1e3
        results = []
        for row, window in enumerate(windows):
            topk = [ClassScore(int(class_id), self.loaded.labels[int(class_id)], float(value))
                    for value, class_id in zip(top_values[row], top_ids[row])]
            results.append(WindowExplanation(
                index=window.plan.index,
                source_frames=list(window.plan.frames),
                pts=[index / window.fps for index in window.plan.frames],
                padded=window.plan.padded,
                aligned_to_end=window.plan.aligned_to_end,
                topk=topk,
                heatmaps=quantized[row].reshape(frames, height, width).numpy(),  # [T*N] -> [T, h, w]
                scale=scale[row].numpy(),
                mass=mass[row].numpy(),
                temporal=temporal[row].numpy(),
                crop=window.crop,
                source_size=window.source_size,
                params=params,
                timings=WindowTimings(decode_ms=window.decode_ms, forward_ms=attribution.forward_ms / batch,
                                      attribution_ms=attribution.attribution_ms / batch,
                                      postprocess_ms=postprocess_ms / batch),
                provenance=Provenance(self.loaded.model_id, self.loaded.weights_sha256, code_version(), params.digest()),
                target_class=int(top_ids[row, 0]) if params.target_class is None else params.target_class,
                method=method or params.method,
            ))
        return results
