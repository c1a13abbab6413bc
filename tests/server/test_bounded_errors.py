"""Hostile requests, round 2 (issue 31), through the session's real server: a client value quoted in a
status is cut short and escaped, every status stays small, the client gets the code the server meant
(a status larger than gRPC's default metadata limit reached a client as RESOURCE_EXHAUSTED), and frame
counts are checked from the message before any frame is converted."""

import grpc
import numpy as np
import pytest

from staa.oip import grpc_predict_v2_pb2 as oip
from staa.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc
from tests.conftest import clip_path

HUGE = "x" * (1 << 20)  # 1 MiB of client text
MAX_DETAILS = 4096  # what "a few KiB" means here


@pytest.fixture()
def channel(server):
    """A channel with gRPC's default limits, as a careless client would have; 16 MiB messages out."""
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 16 << 20)]) as opened:
        yield opened


def refused(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        reply = call(*args, timeout=60)
        if not isinstance(reply, (pb.ModelInfo, oip.ModelInferResponse, oip.ModelMetadataResponse)):
            list(reply)  # a streamed reply: the status comes at its end
    return failure.value


def infer(**changes) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=changes.pop("model_name", "staa"))
    request.inputs.add(name=changes.pop("name", "VIDEO"), datatype="BYTES", shape=changes.pop("shape", [1]))
    clip = clip_path("edge/unordered.mov").read_bytes()
    request.raw_input_contents.append(len(clip).to_bytes(4, "little") + clip)
    for name, value in changes.pop("parameters", {}).items():
        request.parameters[name].string_param = value
    assert not changes
    return request


def many_parameters(count: int) -> oip.ModelInferRequest:
    request = infer()
    for index in range(count):
        request.parameters[f"p{index}"].int64_param = index
    return request


@pytest.mark.parametrize("rpc, build, code, quoted", [
    ("GetModelInfo", lambda: pb.ModelInfoRequest(model="x" * 4000), grpc.StatusCode.NOT_FOUND, "model 'xxxx"),
    ("GetModelInfo", lambda: pb.ModelInfoRequest(model=HUGE), grpc.StatusCode.INVALID_ARGUMENT,
     "a ModelInfoRequest is at most 4096 bytes, got 1048580"),
    ("ExplainClip", lambda: pb.ClipRequest(model=HUGE, clip=b"\0"), grpc.StatusCode.NOT_FOUND, "model 'xxxx"),
    ("ExplainClip", lambda: pb.ClipRequest(clip=clip_path("edge/unordered.mov").read_bytes(), decoder=HUGE),
     grpc.StatusCode.INVALID_ARGUMENT, "decoder 'xxxx"),
    ("ModelInfer", lambda: infer(model_name=HUGE), grpc.StatusCode.NOT_FOUND, "model 'xxxx"),
    ("ModelInfer", lambda: infer(name=HUGE), grpc.StatusCode.INVALID_ARGUMENT, "unknown input 'xxxx"),
    ("ModelInfer", lambda: infer(parameters={HUGE: "1"}), grpc.StatusCode.INVALID_ARGUMENT, "parameters: 'xxxx"),
    ("ModelInfer", lambda: infer(parameters={"method": HUGE}), grpc.StatusCode.INVALID_ARGUMENT, "method 'xxxx"),
    ("ModelInfer", lambda: infer(shape=[1] * 1_000_000), grpc.StatusCode.INVALID_ARGUMENT, "[1, 1, 1"),
    ("ModelInfer", lambda: many_parameters(100_000), grpc.StatusCode.INVALID_ARGUMENT, "ModelInferRequest has more than 64 fields"),
])
def test_a_huge_client_value_is_quoted_short_and_the_client_gets_the_code_meant(channel, rpc, build, code, quoted):
    stub = oip_grpc.GRPCInferenceServiceStub(channel) if rpc == "ModelInfer" else pb_grpc.VideoExplainerStub(channel)
    error = refused(getattr(stub, rpc), build())
    assert error.code() == code, error.details()[:300]
    assert quoted in error.details()
    assert len(error.details().encode()) < MAX_DETAILS


def test_a_client_value_cannot_forge_a_line_in_a_status(channel):
    error = refused(pb_grpc.VideoExplainerStub(channel).GetModelInfo, pb.ModelInfoRequest(model="a\nINFO forged"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "\n" not in error.details()
    assert "'a\\nINFO forged'" in error.details()


def test_a_raw_frame_clip_past_max_clip_frames_is_refused_by_its_count(server, channel):
    """Counted on the wire before the request is parsed: two million empty frames are refused for their
    number, not for what the first of them holds (parsing them would hold the event loop for a second)."""
    frames = pb.RawFrames(fps=25.0)
    frames.frames.extend([pb.Frame()] * 2_000_000)
    error = refused(pb_grpc.VideoExplainerStub(channel).ExplainClip, pb.ClipRequest(frames=frames))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    limit = server.config.max_clip_frames
    assert error.details() == f"RawFrames.frames has more than {limit} entries; max_clip_frames={limit}"


@pytest.mark.parametrize("shape, message", [([1_000_000, 1, 1, 3], "input FRAMES has 1000000 frames; max_clip_frames="),
                                            ([1, 5000, 1, 3], "input FRAMES are 1x5000; the limit is")])
def test_oip_frames_are_refused_by_their_declared_shape(channel, shape, message):
    request = oip.ModelInferRequest(model_name="staa")
    request.inputs.add(name="FRAMES", datatype="UINT8", shape=shape)
    request.raw_input_contents.append(np.zeros(int(np.prod(shape)), np.uint8).tobytes())
    error = refused(oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details()
