"""Every shared clip through the real server on 127.0.0.1, via ExplainClip and via StreamExplain."""

import grpc
import numpy as np
import pytest

from staa_serve.clients.results import heatmaps
from staa_serve.models.video import decode_clip
from staa.v1 import explainer_pb2 as pb
from tests.conftest import SHARED_CLIPS, SHARED_FRAME_COUNTS, clip_path


def assert_well_formed(explanation: pb.Explanation, info: pb.ModelInfo) -> None:
    grids = heatmaps(explanation)
    assert grids.shape == (info.num_frames, info.grid_height, info.grid_width)
    assert grids.max() == 255  # every frame map is quantised relative to its own peak
    assert len(explanation.temporal) == info.num_frames
    assert sum(explanation.temporal) == pytest.approx(1.0, abs=1e-5)
    assert len(explanation.topk) == 5 and explanation.topk[0].probability >= explanation.topk[-1].probability
    assert explanation.provenance.weights_sha256 == info.weights_sha256
    assert explanation.timings.forward_ms > 0 and explanation.timings.total_ms >= explanation.timings.forward_ms
    crop = explanation.crop
    assert 0 <= crop.x0 < crop.x1 <= explanation.source_width and 0 <= crop.y0 < crop.y1 <= explanation.source_height


def live_explanations(client, frames, fps, **options):
    events = list(client.explain_frames(frames, fps, speed=0, **options))
    assert events[-1].WhichOneof("event") == "ack" and events[-1].ack.received == len(frames)
    return [event.explanation for event in events if event.WhichOneof("event") == "explanation"]


@pytest.mark.parametrize("name", SHARED_CLIPS)
def test_clip_is_explained_through_both_rpcs_with_the_same_bytes(client, name):
    info = client.model_info()
    path = clip_path(name)
    clip_windows = list(client.explain_clip(path))
    span = (info.num_frames - 1) * info.default_stride + 1
    assert len(clip_windows) == (SHARED_FRAME_COUNTS[name] - span) // span + 1 + 1  # none ends on the grid: a tail
    last = SHARED_FRAME_COUNTS[name] - 1
    for index, explanation in enumerate(clip_windows):
        assert explanation.window_index == index
        start = last - span + 1 if explanation.aligned_to_end else index * span
        assert list(explanation.source_frames) == [start + step * info.default_stride for step in range(info.num_frames)]
        assert_well_formed(explanation, info)
    assert [window.aligned_to_end for window in clip_windows] == [False] * (len(clip_windows) - 1) + [True]
    decoded = decode_clip(path)
    live_windows = live_explanations(client, list(decoded.frames), decoded.fps)
    assert len(live_windows) == len(clip_windows)
    for from_clip, from_live in zip(clip_windows, live_windows):  # raw RGB24 frames: identical input
        assert from_live.spatial.data == from_clip.spatial.data
        assert list(from_live.temporal) == list(from_clip.temporal)


def test_live_jpeg_frames_and_custom_window(client):
    decoded = decode_clip(clip_path("ucf101_apply_eye_makeup.avi"), needed=lambda index: index < 60)
    windows = live_explanations(client, list(decoded.frames), 25.0, kind="jpeg",
                                window=pb.WindowSpec(stride=2, hop=5))
    assert [list(window.source_frames)[:2] for window in windows[:3]] == [[0, 2], [5, 7], [10, 12]]
    assert len(windows) == (60 - 15) // 5 + 1


def test_decord_backend_serves_the_same_explanation(client):
    path = clip_path("flipping_pancake.mkv")
    pyav = list(client.explain_clip(path, decoder="pyav"))
    decord = list(client.explain_clip(path, decoder="decord"))
    assert [window.spatial.data for window in pyav] == [window.spatial.data for window in decord]


def test_rotated_phone_clip_is_upright_and_short_clip_is_padded(client):
    (explanation,) = list(client.explain_clip(clip_path("edge/video_90.mov")))
    assert (explanation.source_width, explanation.source_height) == (320, 568)
    assert explanation.padded and sorted(set(explanation.source_frames)) == [0, 1, 2]
    assert_well_formed(explanation, client.model_info())


def test_tiny_clip_smaller_than_the_crop(client):
    (explanation,) = list(client.explain_clip(clip_path("edge/unordered.mov")))
    assert explanation.padded and (explanation.source_width, explanation.source_height) == (50, 50)
    assert (explanation.crop.x1, explanation.crop.y1) == pytest.approx((50, 50))


def test_corrupted_clip_gets_invalid_argument_after_saying_so(client):
    received = []
    with pytest.raises(grpc.RpcError) as failure:
        for explanation in client.explain_clip(clip_path("edge/corrupted.mp4")):
            received.append(explanation)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = failure.value.details()
    assert "clip is corrupt: decoding failed at frame 28" in details, details
    # windows explained before the damage only read frames before it (here: none, one span is 29 frames)
    assert all(max(explanation.source_frames) < 28 for explanation in received) and len(received) == 0


def faststart_copy(path, scratch) -> bytes:
    """The clip remuxed with its index first (-movflags +faststart), as web-ready MP4s are (the muxer
    moves the index in a second pass over a real file)."""
    import av

    output = scratch / "faststart.mp4"
    with av.open(str(path)) as source, av.open(str(output), "w", format="mp4", options={"movflags": "+faststart"}) as target:
        video = source.streams.video[0]
        stream = target.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    return output.read_bytes()


def test_a_clip_cut_short_ends_invalid_argument_after_the_windows_it_allows(client, tmp_path):
    whole = faststart_copy(clip_path("arm_wrestling.mp4"), tmp_path)  # declares 280 frames before any frame data
    assert len(list(client.explain_clip(whole))) == 10
    received = []
    with pytest.raises(grpc.RpcError) as failure:
        for explanation in client.explain_clip(whole[: len(whole) // 2]):
            received.append(explanation)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = failure.value.details()
    assert "clip is cut short: its container declares 280 frames but decoding ended after frame" in details, details
    last = int(details.split("after frame ")[1].split(";")[0])
    assert 29 <= last < 279 and received and all(max(explanation.source_frames) <= last for explanation in received)
    assert not any(explanation.aligned_to_end for explanation in received[:-1])


def test_every_frame_of_a_clip_is_in_some_window_and_the_tail_is_marked(client):
    windows = list(client.explain_clip(clip_path("arm_wrestling.mp4")))  # 280 frames, span 29
    assert [window.window_index for window in windows] == list(range(10))
    assert [window.aligned_to_end for window in windows] == [False] * 9 + [True]
    assert list(windows[-1].source_frames) == list(range(251, 280, 4))
    covered = {index for window in windows for index in range(window.source_frames[0], window.source_frames[-1] + 1)}
    assert covered == set(range(280))


def test_raw_frames_clip(client):
    frames = np.random.default_rng(3).integers(0, 255, (30, 72, 96, 3), dtype=np.uint8)
    request = pb.ClipRequest(frames=pb.RawFrames(fps=10, frames=[
        pb.Frame(rgb24=frame.tobytes(), width=96, height=72, sequence=index) for index, frame in enumerate(frames)]))
    windows = [response.explanation for response in client.stub.ExplainClip(request)]
    assert len(windows) == 2 and windows[0].pts[1] == pytest.approx(0.4)  # 30 frames: 0-28, and the tail 1-29
    assert list(windows[1].source_frames) == list(range(1, 30, 4)) and windows[1].aligned_to_end


def test_model_info_describes_the_default_model(client):
    info = client.model_info()
    assert info.model_id == "staa-synthkinetics" and not info.random_weights
    assert list(info.labels)[:2] == ["waving", "clapping"]
    assert (info.num_frames, info.grid_height, info.grid_width) == (8, 8, 8)
    assert list(info.processor.image_mean) == pytest.approx([0.45] * 3)
    assert "torch" in info.versions and "transformers" in info.versions


def test_health_and_reflection_are_registered(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="staa.v1.VideoExplainer"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {service.name for service in next(replies).list_services_response.service}
        # grpc.reflection.v1: the same messages under another package, as grpcurl and grpc-js tools send them
        v1 = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                   request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                   response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        v1_replies = v1(iter([reflection_pb2.ServerReflectionRequest(list_services=""),
                              reflection_pb2.ServerReflectionRequest(file_containing_symbol="staa.v1.VideoExplainer")]))
        v1_names = {service.name for service in next(v1_replies).list_services_response.service}
        described = next(v1_replies).file_descriptor_response.file_descriptor_proto
    assert {"staa.v1.VideoExplainer", "grpc.health.v1.Health"} <= names
    assert {"staa.v1.VideoExplainer", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= v1_names
    assert described and b"VideoExplainer" in described[0]
