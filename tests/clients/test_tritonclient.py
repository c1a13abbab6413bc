"""Any OIP v2 client: NVIDIA's tritonclient[grpc], in its own venv (it pins protobuf < 7), against the real
server's inference.GRPCInferenceService: live, ready, metadata, and infer() heatmaps identical to ExplainClip's."""

import base64
import json
import subprocess

import grpc
import numpy as np
import pytest

from staa_serve.models.video import decode_clip
from staa.oip import grpc_predict_v2_pb2 as oip
from staa.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from staa.v1 import explainer_pb2 as pb
from tests.conftest import REPO, clip_path

TRITON_PYTHON = REPO / ".venv-tritonclient" / "bin" / "python"
EXAMPLE = REPO / "clients" / "oip" / "explain_tritonclient.py"


def test_tritonclient_infer_returns_the_heatmaps_explain_clip_returns(server, client):
    if not TRITON_PYTHON.exists():
        pytest.fail("tritonclient's venv is missing: `make test` creates .venv-tritonclient")
    path = clip_path("arm_wrestling.mp4")
    run = subprocess.run([str(TRITON_PYTHON), str(EXAMPLE), "--server", server.target, "--clip", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["live"] and result["ready"] and result["model_ready"]
    assert result["metadata"]["name"] == "staa-synthkinetics" and result["metadata"]["inputs"] == ["VIDEO", "FRAMES"]
    assert {"HEATMAPS", "TEMPORAL", "TOPK_IDS", "TOPK_PROBS", "CROP", "SOURCE_FRAMES"} <= set(result["metadata"]["outputs"])
    expected = list(client.explain_clip(path))
    assert result["heatmaps_shape"] == [len(expected), 8, 8, 8] == [10, 8, 8, 8]
    assert [base64.b64decode(window["heatmaps"]) for window in result["windows"]] == [window.spatial.data for window in expected]
    assert [window["top"] for window in result["windows"]] == [window.topk[0].class_id for window in expected]
    assert [window["source_frames"] for window in result["windows"]] == [list(window.source_frames) for window in expected]
    assert [window["aligned_to_end"] for window in result["windows"]] == [False] * 9 + [True]


def set_parameter(request, name: str, value: str) -> None:
    request.parameters[name].string_param = value


def test_raw_frames_and_bad_requests_through_the_inference_service(server, client):
    frames = decode_clip(clip_path("ucf101_apply_eye_makeup.avi")).frames[:16]  # 3.7 MB: under the test server's 4 MiB
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20),
                                                       ("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        request = oip.ModelInferRequest(model_name="staa-synthkinetics")
        request.inputs.add(name="FRAMES", datatype="UINT8", shape=list(frames.shape))
        request.raw_input_contents.append(np.ascontiguousarray(frames).tobytes())
        request.parameters["fps"].double_param = 25.0
        set_parameter(request, "method", "staa_class")
        reply = stub.ModelInfer(request)
        names = [output.name for output in reply.outputs]
        same = pb.ClipRequest(frames=pb.RawFrames(fps=25.0, frames=[
            pb.Frame(rgb24=frame.tobytes(), width=frame.shape[1], height=frame.shape[0], sequence=index)
            for index, frame in enumerate(frames)]), staa=pb.StaaOptions(method=pb.METHOD_STAA_CLASS))
        expected = [response.explanation for response in client.stub.ExplainClip(same)]
        assert len(expected) == 1 and expected[0].padded  # 16 frames: less than one span
        assert reply.raw_output_contents[names.index("HEATMAPS")] == expected[0].spatial.data
        refusals = (
            (lambda bad: setattr(bad.inputs[0], "name", "AUDIO"), "unknown input 'AUDIO'"),
            (lambda bad: set_parameter(bad, "colour", "red"), "unknown ModelInfer parameters: 'colour'"),
            (lambda bad: set_parameter(bad, "method", "magic"), "method 'magic'"),
        )
        for change, message in refusals:
            bad = oip.ModelInferRequest()
            bad.CopyFrom(request)
            change(bad)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(bad)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in refused.value.details()
        request.model_name = "resnet"
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert "model 'resnet' is not served here" in refused.value.details()
