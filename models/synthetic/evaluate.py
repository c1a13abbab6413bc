"""Held-out evaluation of a model on SynthKinetics through the serving path, with STAA localisation.

Each held-out clip (seeds never used in training) is rendered, encoded to H.264, decoded and
windowed exactly as the server does, explained by STAA, and scored: top-1 accuracy; spatial
pointing game and relevance mass inside the acting-limb mask; temporal pointing game and tau mass
inside the action interval; each beside its random-map floor.

    python -m staa_serve.models.synthetic.evaluate --model models/weights/staa-synthkinetics [--count 2000]

2,000 clips (about 5 minutes on 2 cores) put one standard error of the accuracy near 0.5 points; with
400, the first 400 of the same seeds, it is about 1.2 points, as wide as the differences between recipes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from staa_serve.models.localisation import score_window, token_mask
from staa_serve.models.pipeline import Staa
from staa_serve.models.preprocess import model_input
from staa_serve.models.registry import load_model
from staa_serve.models.sampling import WindowSpec
from staa_serve.models.staa import StaaParams
from staa_serve.models.synthetic.__main__ import clip_seed, write_mp4
from staa_serve.models.synthetic.generate import render_clip, sample_clip_spec
from staa_serve.models.windowing import iter_clip_windows

EVALUATION_SEED = 3000  # training uses 1000 (train) and 2000 (validation)
METRICS = ("accuracy", "pointing_spatial", "mass_spatial", "pointing_temporal", "mass_temporal")


@dataclass
class ClipResult:
    seed: int
    class_id: int
    predicted: int
    difficulty: float
    scores: dict  # variant name -> LocalisationScores as a dict


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    """H.264 bytes of the frames, as a client would upload them."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        write_mp4(Path(handle.name), frames, fps)
        return Path(handle.name).read_bytes()


@dataclass
class HeldOutWindow:
    """One held-out clip's first window as the server sees it, with its ground truth on the token grid."""

    seed: int
    class_id: int
    difficulty: float
    pixels: torch.Tensor  # [T, 3, H, W] normalised
    token_masks: np.ndarray  # bool [T, h, w]: acting-limb tokens
    in_action: np.ndarray  # bool [T]: sampled frame inside the action interval


def held_out_window(loaded, seed: int, difficulty=None) -> HeldOutWindow:
    """Render clip ``seed``, encode it to H.264, decode and window it exactly as the server does."""
    spec = sample_clip_spec(seed, difficulty=difficulty)
    clip = render_clip(spec)
    window_spec = WindowSpec(loaded.num_frames, loaded.default_stride)
    (window, *_) = list(iter_clip_windows(encode_mp4(clip.frames, spec.fps), window_spec, loaded.processor))
    frames = list(window.plan.frames)
    first, last = spec.action_frames
    in_action = np.array([first <= index <= last for index in frames])
    masks = np.stack([token_mask(clip.masks[index], window.crop, loaded.grid) for index in frames])  # [T, h, w]
    pixels = model_input(window.frames, loaded.processor)  # [T, H, W, 3] uint8 -> [T, 3, H, W] normalised
    return HeldOutWindow(seed, spec.class_id, spec.difficulty, pixels, masks, in_action)


def evaluate_clip(loaded, staa: Staa, seed: int, variants: dict[str, StaaParams], difficulty=None) -> ClipResult:
    held_out = held_out_window(loaded, seed, difficulty)
    pixels = held_out.pixels.unsqueeze(0)  # [1, T, 3, H, W]
    scores, predicted = {}, None
    for name, params in variants.items():
        attribution = staa.attribute_batch(pixels, params)
        predicted = int(attribution.logits.argmax(-1))
        scores[name] = asdict(score_window(attribution.spatial[0].numpy(), attribution.temporal[0].numpy(),
                                           held_out.token_masks, held_out.in_action))
    return ClipResult(seed, held_out.class_id, predicted, held_out.difficulty, scores)


def summarise(results: list[ClipResult], variant: str) -> dict:
    def mean(key):
        values = [result.scores[variant][key] for result in results if result.scores[variant][key] is not None]
        return float(np.mean(values)) if values else float("nan")

    return {
        "variant": variant,
        "clips": len(results),
        "accuracy": float(np.mean([result.predicted == result.class_id for result in results])),
        "pointing_spatial": mean("pointing_spatial"), "floor_pointing_spatial": mean("floor_pointing_spatial"),
        "mass_spatial": mean("mass_spatial"), "floor_mass_spatial": mean("floor_mass_spatial"),
        "pointing_temporal": mean("pointing_temporal"), "mass_temporal": mean("mass_temporal"),
        "floor_temporal": mean("floor_temporal"),
    }


def clip_predictions(loaded, seed: int, batch: int = 16) -> tuple[int, int, int, int]:
    """Clip ``seed`` as the server sees it (H.264, decoded, windowed): (label, the first window's
    prediction, the multi-view prediction, views). Multi-view, Kinetics-style: every window the clip
    offers at every start offset (hop 1), class probabilities averaged."""
    spec = sample_clip_spec(seed)
    clip = render_clip(spec)
    window_spec = WindowSpec(loaded.num_frames, loaded.default_stride, hop=1)
    windows = list(iter_clip_windows(encode_mp4(clip.frames, spec.fps), window_spec, loaded.processor))
    probabilities = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch):
            frames = torch.stack([window.frames for window in windows[start:start + batch]])  # [b, T, H, W, 3]
            logits = loaded.adapter.forward(model_input(frames, loaded.processor, loaded.device))
            probabilities.append(logits.float().softmax(dim=-1).cpu())
    probabilities = torch.cat(probabilities)  # [views, C]
    return spec.class_id, int(probabilities[0].argmax()), int(probabilities.mean(dim=0).argmax()), len(windows)


def accuracy_with_error(hits: list[bool]) -> dict:
    """Accuracy and its standard error (binomial, sqrt(p (1 - p) / n))."""
    accuracy = float(np.mean(hits))
    return {"accuracy": accuracy, "standard_error": float(np.sqrt(accuracy * (1 - accuracy) / len(hits))), "clips": len(hits)}


VARIANTS = {
    "default (mean over layers)": StaaParams(),
    "last layer only": StaaParams(spatial_aggregation="last", temporal_aggregation="last"),
    "mean of last 2 layers": StaaParams(spatial_aggregation="mean_last_k", temporal_aggregation="mean_last_k", last_k=2),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.models.synthetic.evaluate")
    parser.add_argument("--model", default=None)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=EVALUATION_SEED)
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here")
    parser.add_argument("--views", action="store_true",
                        help="accuracy only: single-window and multi-view (every window and offset) with standard errors")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    loaded = load_model(args.model)
    if args.views:
        predictions = [clip_predictions(loaded, clip_seed(args.seed, index)) for index in tqdm(range(args.count), desc="clips")]
        report = {"model": loaded.model_id, "weights_sha256": loaded.weights_sha256, "seed": args.seed, "count": args.count,
                  "single_window": accuracy_with_error([first == label for label, first, _, _ in predictions]),
                  "multi_view": accuracy_with_error([averaged == label for label, _, averaged, _ in predictions]),
                  "views_per_clip": float(np.mean([views for *_, views in predictions]))}
        print(json.dumps(report, indent=1))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
        return
    staa = Staa(loaded)
    results = [evaluate_clip(loaded, staa, clip_seed(args.seed, index), VARIANTS)
               for index in tqdm(range(args.count), desc="held-out clips")]
    summary = [summarise(results, variant) for variant in VARIANTS]
    per_class = {}
    for result in results:
        entry = per_class.setdefault(loaded.labels[result.class_id], [0, 0])
        entry[0] += result.predicted == result.class_id
        entry[1] += 1
    report = {"model": loaded.model_id, "weights_sha256": loaded.weights_sha256, "seed": args.seed,
              "count": args.count, "summary": summary,
              "per_class_accuracy": {label: round(hits / total, 4) for label, (hits, total) in sorted(per_class.items())}}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
