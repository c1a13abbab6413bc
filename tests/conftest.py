"""Shared fixtures: the shared clips, tiny random-weight models in temp dirs, a real server on 127.0.0.1."""

from __future__ import annotations

import os
import time
from pathlib import Path

# Triton kernels run on CPU through the interpreter in tests; it must be set before any kernel
# is defined (kernels are built lazily on first use, so setting it here is early enough).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

REPO = Path(__file__).resolve().parent.parent
# Where tests that run models and kernels put them: the CPU in CI; STAA_TEST_DEVICE=cuda on a lent GPU
# (with TRITON_INTERPRET=0, so the kernels compile there).
TEST_DEVICE = os.environ.get("STAA_TEST_DEVICE", "cpu")
# Served tests compare figures across devices: float32 unless asked otherwise.
TEST_DTYPE = os.environ.get("STAA_TEST_DTYPE", "float32")
CLIPS = Path(os.environ.get("STAA_SHARED_CLIPS", REPO.parent / "shared" / "clips"))
SHARED_CLIPS = ("arm_wrestling.mp4", "flipping_pancake.mkv", "ucf101_apply_eye_makeup.avi")
# Frame counts agreed by three decoders (../shared/clips/README.md).
SHARED_FRAME_COUNTS = {"arm_wrestling.mp4": 280, "flipping_pancake.mkv": 310, "ucf101_apply_eye_makeup.avi": 164}


def wait_for(condition, timeout: float = 15.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (the server frees a stream just after
    its status reaches the client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def clip_path(name: str) -> Path:
    path = CLIPS / name
    if not path.is_file():
        pytest.fail(f"shared clip {path} is missing: the suite needs ../shared/clips beside the repo")
    return path


@pytest.fixture(scope="session")
def default_model():
    from staa_serve.models.registry import load_model

    return load_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight TimeSformer unlike the default (32x32 input, 4x4 grid, 4 frames), saved like a checkpoint."""
    from staa_serve.models.random_weights import random_config, save_random_model

    config = random_config("timesformer", image_size=32, patch_size=8, num_frames=4, hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=5)
    return save_random_model(tmp_path_factory.mktemp("tiny-model"), config, seed=7)


def served_config(**changes):
    """A ServerConfig for a test server: the model on ``TEST_DEVICE`` in ``TEST_DTYPE``, so the
    gRPC end-to-end tests run on a GPU with ``STAA_TEST_DEVICE=cuda``."""
    from staa_serve.server.config import ServerConfig

    return ServerConfig(**({"device": TEST_DEVICE, "dtype": TEST_DTYPE} | changes))


@pytest.fixture(scope="session")
def server():
    """The default model behind a real gRPC server on a free 127.0.0.1 port, for the whole session."""
    from staa_serve.server.app import BackgroundServer

    with BackgroundServer(served_config(port=0, max_clip_bytes=2 << 20, max_message_bytes=4 << 20,
                                       max_frame_width=2048, max_frame_height=2048, max_streams=8,
                                       allow_decord=True)) as running:
        yield running


@pytest.fixture()
def client(server):
    from staa_serve.clients.client import ExplainerClient

    with ExplainerClient(server.target, max_message_bytes=16 << 20, timeout=120) as connected:
        yield connected
