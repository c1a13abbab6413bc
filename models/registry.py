"""Model registry: every model loads through ``load_model``, from a local directory or a hub id.

Sources, in order:
- ``None`` or ``"default"``: the shipped default in ``models/weights/`` (DEFAULT_MODEL_NAME); the
  tiny random-weight ``staa-tiny-random`` ships beside it for tests of the plumbing.
- a local directory with ``config.json``, ``model.safetensors``, ``preprocessor_config.json``.
- a Hugging Face hub id, resolved from the local cache only (no network at run time unless
  ``STAA_ALLOW_DOWNLOAD=1``).
Weights load only from safetensors and ``trust_remote_code`` stays off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoConfig, PretrainedConfig, TimesformerConfig, TimesformerForVideoClassification,
                          VideoMAEConfig, VideoMAEForVideoClassification)

from models.errors import UnsupportedModel
from models.preprocess import ProcessorSettings

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL_NAME = "staa-synthkinetics"  # trained on SynthKinetics (models/synthetic), see its README.md
DEFAULT_FRAME_STRIDE = 4  # used when a checkpoint does not set `staa_frame_stride`
_ARCHITECTURES = {"timesformer": TimesformerForVideoClassification, "videomae": VideoMAEForVideoClassification}
# STAA reads attention probabilities, which VideoMAE's SDPA path never materialises.
_ATTENTION = {"videomae": "eager"}


@dataclass
class LoadedModel:
    """A model ready for inference and the facts the server needs about it."""

    model: torch.nn.Module
    model_id: str
    source_dir: Path
    architecture: str  # config.model_type
    labels: list[str]
    num_frames: int
    image_size: int
    patch_size: int
    processor: ProcessorSettings
    default_stride: int
    weights_sha256: str
    random_weights: bool

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side


def resolve_model_dir(id_or_dir: str | None) -> tuple[str, Path]:
    """Return ``(model_id, local directory)`` for a name, a directory or a cached hub id."""
    if id_or_dir in (None, "", "default"):
        return DEFAULT_MODEL_NAME, WEIGHTS_DIR / DEFAULT_MODEL_NAME
    path = Path(id_or_dir).expanduser()
    if path.is_dir():
        return path.resolve().name, path.resolve()
    if (WEIGHTS_DIR / id_or_dir).is_dir():
        return id_or_dir, WEIGHTS_DIR / id_or_dir
    from huggingface_hub import snapshot_download

    allow_download = os.environ.get("STAA_ALLOW_DOWNLOAD") == "1"
    try:
        snapshot = snapshot_download(id_or_dir, local_files_only=not allow_download,
                                     allow_patterns=["*.json", "*.safetensors"])
    except Exception as exc:  # hub errors vary by version; the message is what matters
        raise UnsupportedModel(
            f"model {id_or_dir!r} is neither a local directory nor a hub id in the local cache "
            f"(downloads are off; set STAA_ALLOW_DOWNLOAD=1 to allow them): {exc}"
        ) from exc
    return id_or_dir, Path(snapshot)


def weights_sha256(model_dir: Path) -> str:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UnsupportedModel(f"{model_dir} has no .safetensors weights (pickle checkpoints are refused)")
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_model(id_or_dir: str | None = None, device: str = "cpu") -> LoadedModel:
    """Load a video classifier and its processor settings for inference.

    Raises:
        UnsupportedModel: unknown architecture, missing safetensors, or not available offline.
    """
    model_id, model_dir = resolve_model_dir(id_or_dir)
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    model_class = _ARCHITECTURES.get(config.model_type)
    if model_class is None:
        raise UnsupportedModel(
            f"model {model_id!r} has architecture {config.model_type!r}; supported: {', '.join(_ARCHITECTURES)}"
        )
    if getattr(config, "attention_type", "divided_space_time") != "divided_space_time":
        raise UnsupportedModel(f"model {model_id!r}: STAA needs divided space-time attention, got {config.attention_type!r}")
    digest = weights_sha256(model_dir)
    options = {"attn_implementation": _ATTENTION[config.model_type]} if config.model_type in _ATTENTION else {}
    model = model_class.from_pretrained(model_dir, local_files_only=True, use_safetensors=True, trust_remote_code=False,
                                        **options)
    model.to(device).eval()
    labels = [config.id2label[index] for index in range(config.num_labels)]
    return LoadedModel(
        model=model,
        model_id=model_id,
        source_dir=model_dir,
        architecture=config.model_type,
        labels=labels,
        num_frames=int(config.num_frames),
        image_size=int(config.image_size),
        patch_size=int(config.patch_size),
        processor=ProcessorSettings.from_file(model_dir / "preprocessor_config.json"),
        default_stride=int(getattr(config, "staa_frame_stride", DEFAULT_FRAME_STRIDE)),
        weights_sha256=digest,
        random_weights=bool(getattr(config, "staa_random_weights", False)),
    )


def tiny_timesformer_config(**overrides) -> TimesformerConfig:
    """A small divided space-time TimeSformer (64x64 input, 8x8 patch grid, 8 frames)."""
    settings = dict(
        image_size=64, patch_size=8, num_channels=3, num_frames=8, hidden_size=96,
        num_hidden_layers=4, num_attention_heads=4, intermediate_size=384,
        attention_type="divided_space_time", num_labels=8,
    )
    settings.update(overrides)
    config = TimesformerConfig(**settings)
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


def tiny_videomae_config(**overrides) -> VideoMAEConfig:
    """A small VideoMAE classifier (64x64 input, 8x8 patch grid, 8 frames in tubelets of 2)."""
    settings = dict(
        image_size=64, patch_size=8, num_channels=3, num_frames=8, tubelet_size=2, hidden_size=96,
        num_hidden_layers=4, num_attention_heads=4, intermediate_size=384, use_mean_pooling=True, num_labels=8,
    )
    settings.update(overrides)
    config = VideoMAEConfig(**settings)
    config.id2label = {index: f"random_class_{index:02d}" for index in range(config.num_labels)}
    config.label2id = {label: index for index, label in config.id2label.items()}
    return config


def save_random_model(out_dir: str | Path, config: PretrainedConfig | None = None, seed: int = 0) -> Path:
    """Save a random-weight video classifier (TimeSformer by default) in the layout real checkpoints use."""
    config = config or tiny_timesformer_config()
    config.staa_random_weights = True
    config.staa_frame_stride = getattr(config, "staa_frame_stride", DEFAULT_FRAME_STRIDE)
    torch.manual_seed(seed)
    model = _ARCHITECTURES[config.model_type](config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps(processor_config_for(config.image_size), indent=2) + "\n")
    return out


def main(argv=None) -> None:
    """``python -m models.registry OUT_DIR``: save a tiny random-weight model to OUT_DIR (never over the
    shipped trained default: its weights took a 90-minute training run to make)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.registry", description=main.__doc__)
    parser.add_argument("out_dir", type=Path, help=f"where to save it (e.g. {WEIGHTS_DIR / 'staa-tiny-random'})")
    args = parser.parse_args(argv)
    if args.out_dir.resolve() == (WEIGHTS_DIR / DEFAULT_MODEL_NAME).resolve():
        parser.error(f"{args.out_dir} holds the shipped trained default model; pick another directory")
    print(save_random_model(args.out_dir))


if __name__ == "__main__":
    main()
