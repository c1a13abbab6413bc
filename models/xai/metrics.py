"""Explanation quality (ARCHITECTURE §7): faithfulness curves, agreement and the randomisation check.

Faithfulness: tubelets (one patch x one frame) are deleted (replaced by a blurred copy of the
clip) or inserted (onto the blurred clip) in the order an attribution ranks them, and p(y-hat) is
read after each step; the area under that curve, over the fraction of tubelets changed, is the
score (deletion: lower is better; insertion: higher). Frames are deleted the same way by the
temporal curve. A random order gives the floor. Localisation against ground truth lives in
``models.localisation``; this module scores maps against the model itself.

Letters: T frames, h x w patch grid, N = h*w, K curve steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.stats import spearmanr

from staa_serve.models.adapters import adapter_for


def blurred_copy(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blurred copy of ``[T, 3, H, W]`` (normalised pixels): the 'removed' content."""
    frames = pixels.permute(0, 2, 3, 1).numpy()  # [T, H, W, 3]
    blurred = np.stack([cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT) for frame in frames])
    return torch.from_numpy(blurred).permute(0, 3, 1, 2).contiguous()


def area_under(curve: np.ndarray) -> float:
    """Trapezoidal area of a curve sampled at evenly spaced fractions 0..1."""
    curve = np.asarray(curve, np.float64)
    return float(((curve[1:] + curve[:-1]) / 2).mean())


def _tubelet_masks(order: np.ndarray, fractions: np.ndarray, frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """Bool ``[K, T, h, w]``: for each fraction, the tubelets among the first ``fraction`` of ``order``."""
    total = len(order)
    rank = np.empty(total, np.int64)
    rank[order] = np.arange(total)
    counts = np.round(fractions * total).astype(np.int64)
    masks = rank[None, :] < counts[:, None]  # [K, T*N]
    return torch.from_numpy(masks.reshape(len(fractions), frames, *grid))


def _expand_to_pixels(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[K, T, h, w]`` -> ``[K, T, 1, H, W]`` (each tubelet covers its patch cell)."""
    steps, frames, rows, cols = masks.shape
    return masks.repeat_interleave(height // rows, dim=2).repeat_interleave(width // cols, dim=3)[:, :, None]


@torch.no_grad()
def probability_curve(predict, pixels: torch.Tensor, blurred: torch.Tensor, masks: torch.Tensor, target: int,
                      insert: bool, batch: int = 16) -> np.ndarray:
    """p(target) for each mask: deletion replaces masked tubelets by ``blurred``; insertion puts
    the masked tubelets of ``pixels`` onto ``blurred``. ``predict`` maps ``[B, T, 3, H, W]`` to logits."""
    height, width = pixels.shape[-2:]
    values = []
    for start in range(0, len(masks), batch):
        chosen = _expand_to_pixels(masks[start:start + batch], height, width)  # [k, T, 1, H, W]
        keep_original = chosen if insert else ~chosen
        clips = torch.where(keep_original, pixels[None], blurred[None])  # [k, T, 3, H, W]
        values.append(predict(clips).softmax(dim=-1)[:, target])
    return torch.cat(values).double().numpy()


@dataclass
class Faithfulness:
    deletion_auc: float
    insertion_auc: float
    deletion_curve: np.ndarray  # [K]
    insertion_curve: np.ndarray  # [K]


def tubelet_faithfulness(predict, pixels: torch.Tensor, scores: np.ndarray, target: int, blurred: torch.Tensor,
                         steps: int = 16) -> Faithfulness:
    """Deletion and insertion of tubelets ranked by ``scores`` ``[T, h, w]`` (highest first; ties by index)."""
    frames, rows, cols = scores.shape
    order = np.argsort(-scores.ravel(), kind="stable")
    fractions = np.linspace(0, 1, steps + 1)
    masks = _tubelet_masks(order, fractions, frames, (rows, cols))
    deletion = probability_curve(predict, pixels, blurred, masks, target, insert=False)
    insertion = probability_curve(predict, pixels, blurred, masks, target, insert=True)
    return Faithfulness(area_under(deletion), area_under(insertion), deletion, insertion)


def frame_deletion(predict, pixels: torch.Tensor, temporal: np.ndarray, target: int, blurred: torch.Tensor,
                   grid: tuple[int, int]) -> tuple[float, np.ndarray]:
    """Delete whole frames in the order of ``temporal`` ``[T]``; returns (AUC, curve of T+1 points)."""
    frames = len(temporal)
    order = np.argsort(-np.asarray(temporal), kind="stable")
    masks = torch.zeros(frames + 1, frames, *grid, dtype=torch.bool)
    for step in range(1, frames + 1):
        masks[step, order[:step]] = True
    curve = probability_curve(predict, pixels, blurred, masks, target, insert=False)
    return area_under(curve), curve


def random_scores(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A uniformly random ranking: the floor every ordering is compared with."""
    return np.random.default_rng(seed).random(shape)


def rank_agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman rank correlation of two maps over all their entries (NaN when either is constant)."""
    first, second = np.asarray(first, np.float64).ravel(), np.asarray(second, np.float64).ravel()
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return float("nan")
    return float(spearmanr(first, second).statistic)


def with_random_weights(loaded, seed: int = 0):
    """The same model with freshly initialised weights (the model-randomisation sanity check):
    a faithful explanation must change when the weights it explains are destroyed."""
    torch.manual_seed(seed)
    fresh = type(loaded.model)(loaded.model.config).to(device=loaded.device, dtype=loaded.dtype).eval()
    adapter = adapter_for(fresh, loaded.adapter.implementation)
    return dataclasses.replace(loaded, model=fresh, adapter=adapter, random_weights=True)


def cascading_randomisations(loaded, seed: int = 0) -> list[tuple[str, object]]:
    """The cascading model-randomisation check (Adebayo et al. 2018, "Sanity Checks for Saliency
    Maps"): stage 1 re-initialises the head (classifier and final LayerNorm: every parameter outside
    the blocks and the embeddings), each next stage also the next block down, the last one the
    embeddings too. Returns (stage name, LoadedModel) pairs, randomisation growing; an explanation of
    the model's decision must move away from the trained model's already at the first stages."""
    torch.manual_seed(seed)
    initial = type(loaded.model)(loaded.model.config).state_dict()  # a fresh initialisation to draw from
    trained = loaded.model.state_dict()
    module_names = {id(module): name for name, module in loaded.model.named_modules()}
    blocks = [module_names[id(layer)] + "." for layer in loaded.adapter.layers]

    def group(name: str) -> str:
        block = next((index for index, prefix in enumerate(blocks) if name.startswith(prefix)), None)
        if block is not None:
            return f"block {block + 1}"
        return "embeddings" if ".embeddings." in f".{name}" else "head"

    order = ["head", *(f"block {index}" for index in range(len(blocks), 0, -1)), "embeddings"]
    stages, randomised = [], set()
    for stage in order:
        randomised.add(stage)
        state = {name: initial[name] if group(name) in randomised else tensor for name, tensor in trained.items()}
        model = type(loaded.model)(loaded.model.config)
        model.load_state_dict(state)
        model = model.to(device=loaded.device, dtype=loaded.dtype).eval()
        label = "classifier + final norm" if stage == "head" else f"+ {stage}"
        stages.append((label, dataclasses.replace(loaded, model=model, adapter=adapter_for(model, loaded.adapter.implementation),
                                                  random_weights=True)))
    return stages
