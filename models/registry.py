"""Model registry: every model loads through ``load_model``, from a local directory or a hub id.

Sources, in order:
- ``None`` or ``"default"``: the shipped default in ``models/weights/`` (DEFAULT_MODEL_NAME); the
  tiny random-weight ``staa-tiny-random`` ships beside it for tests of the plumbing
  (``models/random_weights.py`` makes more).
- a local directory with ``config.json``, ``model.safetensors``, ``preprocessor_config.json``.
- a Hugging Face hub id, resolved from the local cache only (no network at run time unless
  ``STAA_ALLOW_DOWNLOAD=1``).
Weights load only from safetensors and ``trust_remote_code`` stays off. Loading attaches the
architecture's adapter (``models.adapters``), which routes every attention call through STAA's tap
with the chosen implementation (``fused``, the default, or the ``eager`` oracle).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoConfig, TimesformerForVideoClassification, VideoMAEForVideoClassification,
                          VivitForVideoClassification)

from staa_serve.models.adapters import VideoAdapter, adapter_for
from staa_serve.models.devices import resolve_device, resolve_dtype
from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.preprocess import ProcessorSettings

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL_NAME = "staa-synthkinetics"  # trained on SynthKinetics (models/synthetic), see its README.md
DEFAULT_FRAME_STRIDE = 4  # used when a checkpoint does not set `staa_frame_stride`
ARCHITECTURES = {"timesformer": TimesformerForVideoClassification, "videomae": VideoMAEForVideoClassification,
                 "vivit": VivitForVideoClassification}


@dataclass
class LoadedModel:
    """A model ready for inference and the facts the server needs about it."""

    model: torch.nn.Module
    adapter: VideoAdapter  # its layout and attention tap (models.adapters)
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
    device: torch.device
    dtype: torch.dtype  # of the weights and activations; STAA's rows and maps are float32 on any

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


def load_model(id_or_dir: str | None = None, device: str = "cpu", attention: str = "fused",
               dtype: str = "auto") -> LoadedModel:
    """Load a video classifier and its processor settings for inference on ``device`` in ``dtype``
    (``models.devices``: ``auto`` is bfloat16 on CUDA, float32 elsewhere); ``attention`` is the
    implementation its attention runs (``models.attention.IMPLEMENTATIONS``).

    Raises:
        UnsupportedModel: unknown architecture, missing safetensors, not available offline, or a
            device that is not there.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model_id, model_dir = resolve_model_dir(id_or_dir)
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    model_class = ARCHITECTURES.get(config.model_type)
    if model_class is None:
        raise UnsupportedModel(
            f"model {model_id!r} has architecture {config.model_type!r}; supported: {', '.join(ARCHITECTURES)}"
        )
    if getattr(config, "attention_type", "divided_space_time") != "divided_space_time":
        raise UnsupportedModel(f"model {model_id!r}: STAA needs divided space-time attention, got {config.attention_type!r}")
    digest = weights_sha256(model_dir)
    model = model_class.from_pretrained(model_dir, local_files_only=True, use_safetensors=True, trust_remote_code=False)
    model.to(device=torch_device, dtype=torch_dtype).eval()
    adapter = adapter_for(model, attention)
    labels = [config.id2label[index] for index in range(config.num_labels)]
    return LoadedModel(
        model=model,
        adapter=adapter,
        model_id=model_id,
        source_dir=model_dir,
        architecture=config.model_type,
        labels=labels,
        num_frames=int(config.num_frames),
        image_size=adapter.grid[0] * _patch_size(config),
        patch_size=_patch_size(config),
        processor=ProcessorSettings.from_file(model_dir / "preprocessor_config.json"),
        default_stride=int(getattr(config, "staa_frame_stride", DEFAULT_FRAME_STRIDE)),
        weights_sha256=digest,
        random_weights=bool(getattr(config, "staa_random_weights", False)),
        device=torch_device,
        dtype=torch_dtype,
    )


def _patch_size(config) -> int:
    """The side of a square patch (ViViT names it in ``tubelet_size``: depth, height, width)."""
    return int(config.tubelet_size[1]) if config.model_type == "vivit" else int(config.patch_size)
