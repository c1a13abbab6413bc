"""Device and precision: names checked before anything loads, a missing GPU refused in one line, a
half-precision model explained with float32 maps."""

import subprocess
import sys

import pytest
import torch

from staa_serve.models.devices import check_device_name, resolve_device, resolve_dtype
from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.pipeline import Staa
from staa_serve.models.registry import load_model
from tests.conftest import REPO


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_device_names_are_checked_without_probing(name):
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda, cuda:N"):
        check_device_name(name)


def test_auto_is_the_gpu_with_bfloat16_where_there_is_one_else_the_cpu_in_float32():
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", device) == (torch.bfloat16 if device.type == "cuda" else torch.float32)
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of auto, float32, bfloat16, float16, got 'fp8'"):
        resolve_dtype("fp8", device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_is_refused_in_one_line():
    with pytest.raises(UnsupportedModel, match=r"device 'cuda:1' is not available: this process sees 0 CUDA device"):
        resolve_device("cuda:1")
    result = subprocess.run([sys.executable, "-m", "staa_serve.server.app", "--port", "0", "--device", "cuda"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "staa-serve: error: could not load model 'default': UnsupportedModel: device 'cuda' is not available" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bfloat16_model_gives_float32_maps_close_to_the_float32_ones(default_model):
    half = load_model(dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and next(half.model.parameters()).dtype == torch.bfloat16
    clip = torch.randn(2, 8, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    low, full = Staa(half).attribute(clip), Staa(default_model).attribute(clip)
    assert low.spatial.dtype == low.temporal.dtype == low.logits.dtype == torch.float32
    torch.testing.assert_close(low.spatial.sum(dim=(2, 3)), torch.ones(2, 8))
    torch.testing.assert_close(low.temporal.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(low.spatial, full.spatial, rtol=0.1, atol=2e-3)  # bfloat16 keeps ~3 significant digits
    torch.testing.assert_close(low.temporal, full.temporal, rtol=0.05, atol=2e-3)
