"""The wheel as a user installs it: generated stubs shipped with the stamp that matches them, so an
installed package never regenerates them and grpcio-tools stays a build dependency."""

import subprocess
import sys

import google.protobuf
import grpc

from tests.conftest import REPO


def run(*command, cwd=None):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_the_wheel_imports_its_stubs_without_grpcio_tools(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "wheel", REPO)
    (wheel,) = (tmp_path / "wheel").glob("staa_serve-*.whl")
    python = tmp_path / "venv" / "bin" / "python"
    run(sys.executable, "-m", "venv", tmp_path / "venv")
    run(python, "-m", "pip", "install", "-q", f"protobuf=={google.protobuf.__version__}", f"grpcio=={grpc.__version__}")
    run(python, "-m", "pip", "install", "-q", "--no-deps", wheel)
    out = run(python, "-c", "import importlib.util, staa.v1, staa.oip; "
                            "from staa.v1 import explainer_pb2 as pb; from staa.oip import grpc_predict_v2_pb2 as oip; "
                            "print(importlib.util.find_spec('grpc_tools') is None, pb.Method.Name(2), "
                            "oip.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name)", cwd=tmp_path)
    assert out.split() == ["True", "METHOD_STAA_CLASS", "inference.GRPCInferenceService"]
