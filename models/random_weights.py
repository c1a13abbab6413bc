"""Random-weight video classifiers in the layout real checkpoints use: for tests (tiny geometry),
speed benchmarks (real-size geometry: random weights cost what trained ones cost) and users
checking a deployment before their checkpoint arrives.

``python -m staa_serve.models.random_weights OUT_DIR [--architecture A] [--size tiny|base] [--seed S]``
saves one. Never over the shipped trained default: its weights took a 90-minute training run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import PretrainedConfig, TimesformerConfig, VideoMAEConfig, VivitConfig

from staa_serve.models.registry import ARCHITECTURES, DEFAULT_FRAME_STRIDE, DEFAULT_MODEL_NAME, WEIGHTS_DIR

# The published base checkpoints' geometry (facebook/timesformer-base-finetuned-k400,
# MCG-NJU/videomae-base-finetuned-kinetics, google/vivit-b-16x2-kinetics400), and a tiny one per
# architecture (64x64 input, 8x8 patch grid, 8 frames) for tests of the plumbing.
_BASE = dict(image_size=224, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
             num_labels=400)
_TINY = dict(image_size=64, hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384,
             num_labels=8)
GEOMETRIES = {
    ("timesformer", "base"): dict(_BASE, patch_size=16, num_frames=8, attention_type="divided_space_time"),
    ("timesformer", "tiny"): dict(_TINY, patch_size=8, num_frames=8, attention_type="divided_space_time"),
    ("videomae", "base"): dict(_BASE, patch_size=16, num_frames=16, tubelet_size=2, use_mean_pooling=True),
    ("videomae", "tiny"): dict(_TINY, patch_size=8, num_frames=8, tubelet_size=2, use_mean_pooling=True),
    ("vivit", "base"): dict(_BASE, tubelet_size=[2, 16, 16], num_frames=32),
    ("vivit", "tiny"): dict(_TINY, tubelet_size=[2, 8, 8], num_frames=8),
}
_CONFIGS = {"timesformer": TimesformerConfig, "videomae": VideoMAEConfig, "vivit": VivitConfig}


def random_config(architecture: str = "timesformer", size: str = "tiny", **overrides) -> PretrainedConfig:
    """A config of ``GEOMETRIES[(architecture, size)]`` with ``overrides``, labelled ``random_class_NN``.
    A ViViT override of ``patch_size`` sets the spatial part of its tubelet."""
    settings = dict(GEOMETRIES[(architecture, size)])
    if architecture == "vivit" and "patch_size" in overrides:
        patch = overrides.pop("patch_size")
        settings["tubelet_size"] = [settings["tubelet_size"][0], patch, patch]
    settings.update(overrides)
    config = _CONFIGS[architecture](**settings)
    config.id2label = {index: f"random_class_{index:02d}" for index in range(config.num_labels)}
    config.label2id = {label: index for index, label in config.id2label.items()}
    return config


def processor_config_for(image_size: int) -> dict:
    """A VideoMAEImageProcessor-format config (Kinetics mean/std, as HF's TimeSformer uses)."""
    return {
        "image_processor_type": "VideoMAEImageProcessor",
        "do_resize": True, "size": {"shortest_edge": image_size}, "resample": 2,
        "do_center_crop": True, "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.45, 0.45, 0.45], "image_std": [0.225, 0.225, 0.225],
    }


def save_random_model(out_dir: str | Path, config: PretrainedConfig | None = None, seed: int = 0) -> Path:
    """Save a random-weight video classifier (the tiny TimeSformer by default) with its processor config."""
    out = Path(out_dir)
    if out.resolve() == (WEIGHTS_DIR / DEFAULT_MODEL_NAME).resolve():
        raise ValueError(f"{out} holds the shipped trained default model; pick another directory")
    config = config or random_config()
    config.staa_random_weights = True
    config.staa_frame_stride = getattr(config, "staa_frame_stride", DEFAULT_FRAME_STRIDE)
    torch.manual_seed(seed)
    model = ARCHITECTURES[config.model_type](config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    (out / "preprocessor_config.json").write_text(json.dumps(processor_config_for(image_size), indent=2) + "\n")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.models.random_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help=f"where to save it (e.g. {WEIGHTS_DIR / 'staa-tiny-random'})")
    parser.add_argument("--architecture", choices=sorted(_CONFIGS), default="timesformer")
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        print(save_random_model(args.out_dir, random_config(args.architecture, args.size), args.seed))
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
