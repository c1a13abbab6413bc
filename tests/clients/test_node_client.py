"""A Node.js client written from the .proto alone (clients/node/explain.js, @grpc/grpc-js) against the
real server: health, GetModelInfo, ExplainClip and StreamExplain, heatmaps byte-identical to Python's."""

import base64
import json
import shutil
import subprocess

import pytest

from staa_serve.models.video import decode_clip
from tests.conftest import REPO, clip_path

NODE_CLIENT = REPO / "clients" / "node"


def test_node_client_gets_the_same_heatmaps_as_the_python_client(server, client, tmp_path):
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("Node.js and clients/node's packages are needed: `make test` installs them (npm ci)")
    path = clip_path("ucf101_apply_eye_makeup.avi")
    decoded = decode_clip(path)
    frames = tmp_path / "frames.rgb"
    frames.write_bytes(decoded.frames.tobytes())  # [164, 240, 320, 3] raw RGB24
    height, width = decoded.frames.shape[1:3]
    run = subprocess.run([node, str(NODE_CLIENT / "explain.js"), "--server", server.target, "--clip", str(path),
                          "--frames", str(frames), "--width", str(width), "--height", str(height),
                          "--fps", str(decoded.fps)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["health"] == "SERVING"
    assert result["model"] == {"name": "staa-synthkinetics", "modelId": "staa-synthkinetics", "numFrames": 8, "labels": 8}
    python = list(client.explain_clip(path))
    assert [base64.b64decode(window["heatmaps"]) for window in result["clip"]] == [window.spatial.data for window in python]
    assert [window["windowIndex"] for window in result["clip"]] == list(range(len(python))) == list(range(6))
    assert result["clip"][-1]["alignedToEnd"] and result["clip"][0]["sourceFrames"] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert result["clip"][0]["method"] == "METHOD_STAA"  # enums as strings, as the loader options ask
    # The same frames streamed without any option: nothing dropped, the same maps as the clip's.
    assert [window["heatmaps"] for window in result["stream"]] == [window["heatmaps"] for window in result["clip"]]
    assert result["lastAck"]["received"] == len(decoded.frames) and result["lastAck"]["dropped"] == 0
    # The model field reaches the server: a name it does not serve is NOT_FOUND (status 5).
    refused = subprocess.run([node, str(NODE_CLIENT / "explain.js"), "--server", server.target, "--clip", str(path),
                              "--model", "resnet"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("gRPC status 5: model 'resnet' is not served here")
