"""The wheel as a user installs it: the base install is the client (no torch, triton, decord or
grpcio-tools), everything lives under ``staa_serve`` (plus the generated ``staa`` stubs, shipped with
the stamp that matches them, so an installed package never regenerates them), and its staa-client
talks to a real server."""

import json
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest

from tests.conftest import REPO, clip_path

# The base install's requirements, pinned to the versions this venv holds (pip's cache has them).
BASE = ("numpy", "grpcio", "grpcio-health-checking", "protobuf", "av", "opencv-python-headless")


def run(*command, cwd=None):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Built from a copy of the source tree: an in-tree build reuses build/, whose leftovers would ship."""
    source = tmp_path_factory.mktemp("source") / "staa-serve"
    leftovers = shutil.ignore_patterns(".git", ".venv*", ".whl", ".pytest_cache", "build", "dist", "*.egg-info",
                                       "__pycache__", "node_modules", "demo-out", "test-artifacts", "out")
    shutil.copytree(REPO, source, ignore=leftovers)
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source)
    (built,) = out.glob("staa_serve-*.whl")
    return built


@pytest.fixture(scope="module")
def base_venv(wheel, tmp_path_factory):
    """A fresh venv holding the base install only (its requirements resolved by pip from the wheel)."""
    venv = tmp_path_factory.mktemp("base-venv")
    run(sys.executable, "-m", "venv", venv)
    constraints = venv / "constraints.txt"
    constraints.write_text("".join(f"{name}=={metadata.version(name)}\n" for name in BASE))
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", constraints, wheel)
    return venv


def test_the_wheel_installs_everything_under_one_namespace(wheel):
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"staa_serve", "staa"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "staa_serve/models/weights/staa-synthkinetics/model.safetensors" in names
    assert "staa/v1/.stubs.sha256" in names and "staa/oip/grpc_predict_v2_pb2.py" in names


def test_the_base_install_is_a_client_without_torch(base_venv, server, tmp_path):
    python = base_venv / "bin" / "python"
    absent = run(python, "-c", "import importlib.util as u; print([m for m in ('torch', 'triton', 'decord', 'transformers', "
                               "'grpc_tools', 'aiohttp') if u.find_spec(m) is not None])", cwd=tmp_path)
    assert absent.strip() == "[]"
    client = base_venv / "bin" / "staa-client"
    assert run(client, "--version").strip() == f"staa-client {metadata.version('staa-serve')}"
    info = json.loads(run(client, "--server", server.target, "info", cwd=tmp_path))
    assert info["model_id"] == "staa-synthkinetics"
    out = tmp_path / "explained"
    run(client, "--server", server.target, "explain", clip_path("arm_wrestling.mp4"), "--out", out, "--no-overlay",
        cwd=tmp_path)
    windows = json.loads((out / "explanations.json").read_text())["windows"]
    assert len(windows) == 10 and all(len(window["spatial"]) == 8 for window in windows)



def test_the_base_install_names_the_extra_a_server_command_needs(base_venv, tmp_path):
    for command, extra, missing in (("staa-serve", "server", "torch, transformers, prometheus_client"),
                                    ("staa-viewer", "viewer", "aiohttp"), ("staa-bench", "bench", "torch, matplotlib")):
        result = subprocess.run([base_venv / "bin" / command, "--version"], capture_output=True, text=True, cwd=tmp_path,
                                timeout=120)
        assert result.returncode != 0
        assert (f"ImportError: this part of staa-serve needs its [{extra}] extra: pip install 'staa-serve[{extra}]' "
                f"(missing: {missing})") in result.stderr


def test_the_wheel_imports_its_stubs_without_grpcio_tools(base_venv, tmp_path):
    out = run(base_venv / "bin" / "python", "-c",
              "import importlib.util, staa.v1, staa.oip; "
              "from staa.v1 import explainer_pb2 as pb; from staa.oip import grpc_predict_v2_pb2 as oip; "
              "print(importlib.util.find_spec('grpc_tools') is None, pb.Method.Name(2), "
              "oip.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name)", cwd=tmp_path)
    assert out.split() == ["True", "METHOD_STAA_CLASS", "inference.GRPCInferenceService"]
