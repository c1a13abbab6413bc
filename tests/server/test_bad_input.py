"""Bad input gets a clear status and message; the server keeps serving the next request."""

import threading

import grpc
import numpy as np
import pytest

from staa.v1 import explainer_pb2 as pb
from tests.conftest import clip_path, wait_for

SMALL_CLIP = "edge/unordered.mov"


def still_serving(client) -> None:
    (explanation,) = list(client.explain_clip(clip_path(SMALL_CLIP)))
    assert explanation.padded


def clip_status(client, request: pb.ClipRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        list(client.stub.ExplainClip(request, timeout=60))
    return failure.value


def stream_status(client, requests) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        list(client.stub.StreamExplain(iter(requests), timeout=60))
    return failure.value


def frame(width=32, height=24, sequence=0, **data):
    data = data or {"rgb24": bytes(width * height * 3)}
    return pb.StreamRequest(frame=pb.Frame(width=width, height=height, sequence=sequence, **data))


CONFIG = pb.StreamRequest(config=pb.StreamConfig())


@pytest.mark.parametrize("request_,message", [
    (pb.ClipRequest(clip=b"\x00garbage" * 1000), "could not be opened"),
    (pb.ClipRequest(clip=b""), "clip is empty (0 bytes)"),  # oneof fields keep presence, even empty
    (pb.ClipRequest(), "ClipRequest.source is not set"),
    (pb.ClipRequest(clip=b"x", window=pb.WindowSpec(num_frames=16)), "WindowSpec.num_frames=16"),
    (pb.ClipRequest(clip=b"x", window=pb.WindowSpec(stride=1000)), "WindowSpec.stride=1000 exceeds max_stride=64"),
    (pb.ClipRequest(clip=b"x", staa=pb.StaaOptions(gamma=0.1)), "StaaOptions.gamma must be in [1.0, 16.0], got 0.1"),
    (pb.ClipRequest(clip=b"x", staa=pb.StaaOptions(top_k=99)), "StaaOptions.top_k=99 exceeds max_top_k=20"),
    (pb.ClipRequest(clip=b"x", staa=pb.StaaOptions(spatial_aggregation=42)), "spatial_aggregation=42"),
    (pb.ClipRequest(clip=b"x", decoder="gstreamer"), "decoder 'gstreamer'"),
    (pb.ClipRequest(frames=pb.RawFrames()), "ClipRequest.frames is empty"),
])
def test_bad_clip_requests_get_invalid_argument_naming_the_field(client, request_, message):
    error = clip_status(client, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    still_serving(client)


def test_oversized_clip_gets_invalid_argument_with_the_limit(client, server):
    limit = server.config.max_clip_bytes
    error = clip_status(client, pb.ClipRequest(clip=b"\x00" * (limit + 1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"max_clip_bytes={limit}" in error.details()
    still_serving(client)


def test_message_over_the_transport_limit_is_refused_by_grpc_and_server_survives(client, server):
    error = clip_status(client, pb.ClipRequest(clip=b"\x00" * (server.config.max_message_bytes + 1024)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # gRPC's own check, before our handler
    still_serving(client)


@pytest.mark.parametrize("requests,message", [
    ([frame()], "the first StreamRequest must carry a StreamConfig, got frame"),
    ([], "the stream ended before its StreamConfig"),
    ([CONFIG, CONFIG], "StreamConfig may only be sent once"),
    ([CONFIG, frame(rgb24=b"\x00" * 100)], "Frame.rgb24 has 100 bytes but header 32x24 needs 2304"),
    ([CONFIG, frame(width=0, height=0)], "Frame.width and Frame.height are required"),
    ([CONFIG, frame(jpeg=b"not a jpeg")], "Frame.jpeg (10 bytes) does not start with a JPEG SOI marker"),
    ([CONFIG, frame(jpeg=b"\xff\xd8\xff\xdb\x00\x04\x00\x00")], "has no frame header (SOF)"),
    ([CONFIG, frame(png=b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)], "does not start with a PNG signature and IHDR"),
    ([CONFIG, pb.StreamRequest(frame=pb.Frame(width=4, height=4))], "Frame.data is not set"),
    ([CONFIG, frame(width=5000, height=10, rgb24=b"\x00" * 150000)], "frame width 5000 exceeds max_frame_width=2048"),
    ([CONFIG, frame(sequence=5), frame(sequence=5)], "Frame.sequence=5 is not greater than the previous 5"),
    ([CONFIG, frame(), frame(width=16, height=16, sequence=1)], "frame 1 is 16x16 but the stream started at 32x24"),
    ([pb.StreamRequest(config=pb.StreamConfig(fps=-1))], "StreamConfig.fps must be a number in [0, 1000]"),
    ([pb.StreamRequest(config=pb.StreamConfig(fps=float("nan")))], "StreamConfig.fps must be a number in [0, 1000] (0 = the default), got nan"),
])
def test_bad_stream_requests_get_invalid_argument(client, requests, message):
    error = stream_status(client, requests)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    still_serving(client)


def test_jpeg_whose_size_disagrees_with_its_header(client):
    from staa_serve.models.frames import encode_frame

    jpeg = encode_frame(np.zeros((24, 32, 3), np.uint8), "jpeg")
    error = stream_status(client, [CONFIG, frame(width=64, height=48, jpeg=jpeg)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Frame.jpeg declares 32x24 but Frame.width/height say 64x48" in error.details()  # before decoding


def test_explanations_sent_before_an_error_are_kept(client):
    info = client.model_info()
    span = (info.num_frames - 1) * info.default_stride + 1
    good = [frame(sequence=index) for index in range(span)]
    received = []
    with pytest.raises(grpc.RpcError) as failure:
        for event in client.stub.StreamExplain(iter([CONFIG, *good, frame(sequence=0)]), timeout=60):
            received.append(event)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [event.explanation.window_index for event in received if event.HasField("explanation")] == [0]


def test_client_cancel_mid_stream_frees_the_session(client, server):
    keep_sending = threading.Event()

    def requests():
        yield CONFIG
        for sequence in range(10_000):
            if sequence > 40:
                keep_sending.wait(30)  # hold the stream open until cancelled
            yield frame(sequence=sequence)

    call = client.stub.StreamExplain(requests(), timeout=60)
    first = next(event for event in call if event.HasField("explanation"))
    assert first.explanation.window_index == 0
    assert server.servicer.sessions.active == 1
    call.cancel()
    keep_sending.set()
    assert wait_for(lambda: server.servicer.sessions.active == 0)
    still_serving(client)


def test_client_disconnect_frees_the_session(server):
    from staa_serve.clients.client import ExplainerClient

    hold = threading.Event()

    def requests():
        yield CONFIG
        yield frame(sequence=0)
        hold.wait(30)

    leaving = ExplainerClient(server.target)
    call = leaving.stub.StreamExplain(requests())
    assert wait_for(lambda: server.servicer.sessions.active == 1)
    leaving.close()  # the channel goes away without a cancel
    hold.set()
    assert wait_for(lambda: server.servicer.sessions.active == 0)
    del call


def test_stream_limit_gets_resource_exhausted(server, client):
    holds = [threading.Event() for _ in range(server.config.max_streams)]

    def holding(event):
        yield CONFIG
        event.wait(30)

    calls = [client.stub.StreamExplain(holding(event), timeout=60) for event in holds]
    try:
        assert wait_for(lambda: server.servicer.sessions.active == server.config.max_streams)
        error = stream_status(client, [CONFIG])
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"max_streams={server.config.max_streams}" in error.details()
    finally:
        for event in holds:
            event.set()
        for call in calls:
            list(call)
    assert wait_for(lambda: server.servicer.sessions.active == 0)
