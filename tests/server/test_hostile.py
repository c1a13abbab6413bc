"""Hostile and careless clients against a real ``staa-serve`` process with default limits, its memory
watched from /proc: every attack gets a clear status, the server's peak RSS (VmHWM, exact whatever
the machine's load) stays within budget, and the server keeps serving. The figures before and after
the fixes are in benchmarks/reports/hostile*.md (``staa-bench hostile``)."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from staa_serve.benchmarks.hostile import jpeg_bomb, png_bomb, run_all, size_switch_clip
from staa_serve.benchmarks.load import SpawnedServer
from staa_serve.benchmarks.report import rss_mb
from staa_serve.benchmarks.streams import paced_stream
from staa_serve.clients.client import ExplainerClient, clip_request
from staa_serve.models.sampling import WindowSpec, plan_windows
from staa.v1 import explainer_pb2 as pb
from tests.conftest import clip_path

GIB = 1024  # MiB
BUDGET_MIB = 1.5 * GIB  # the acceptance bound: peak RSS within 1.5 GiB of the idle server


class Watched:
    """A spawned default server; ``peak_over_idle()`` is its RSS high-water mark above its idle RSS."""

    def __init__(self, *args: str, token: str | None = None):
        self.server = SpawnedServer(list(args))
        self.target = self.server.target
        try:
            with ExplainerClient(self.target, timeout=60, token=token) as client:  # lazy init happens now
                self.info = client.model_info()
        except BaseException:
            self.server.process.kill()  # never leave a server behind the test
            raise
        self.idle = self.server.rss_mb()

    def peak_over_idle(self) -> float:
        return rss_mb(self.server.process.pid, "VmHWM") - self.idle

    def alive_and_serving(self) -> bool:
        if self.server.process.poll() is not None:
            return False
        with ExplainerClient(self.target, timeout=60) as client:
            return len(list(client.explain_clip(clip_path("ucf101_apply_eye_makeup.avi")))) >= 1

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def watched():
    server = Watched()
    yield server
    server.stop()


def clip_status(target: str, request: pb.ClipRequest, metadata=None) -> tuple[str, str]:
    try:
        with ExplainerClient(target, timeout=120) as client:
            events = list(client.stub.ExplainClip(request, timeout=120, metadata=metadata))
        return "OK", f"{len(events)} events"
    except grpc.RpcError as error:
        return error.code().name, error.details()


def stream_status(target: str, config: pb.StreamConfig, frames) -> tuple[str, str]:
    def requests():
        yield pb.StreamRequest(config=config)
        yield from frames

    try:
        with ExplainerClient(target, timeout=120) as client:
            events = list(client.stub.StreamExplain(requests(), timeout=120))
        return "OK", f"{sum(event.WhichOneof('event') == 'explanation' for event in events)} windows"
    except grpc.RpcError as error:
        return error.code().name, error.details()


def raw_frames(**data) -> pb.ClipRequest:
    return pb.ClipRequest(frames=pb.RawFrames(frames=[pb.Frame(**data)], fps=25))


# ---------------------------------------------------------------- decode bombs

@pytest.mark.parametrize("name,call,message", [
    ("jpeg bomb in a live stream",
     lambda target: stream_status(target, pb.StreamConfig(fps=25), [pb.StreamRequest(frame=pb.Frame(jpeg=jpeg_bomb()))]),
     "Frame.jpeg declared width 32000 exceeds max_frame_width=4096"),
    ("jpeg bomb in a raw-frames clip", lambda target: clip_status(target, raw_frames(jpeg=jpeg_bomb())),
     "Frame.jpeg declared width 32000 exceeds max_frame_width=4096"),
    ("jpeg over OpenCV's own pixel limit", lambda target: clip_status(target, raw_frames(jpeg=jpeg_bomb(40000, 40000))),
     "Frame.jpeg declared width 40000 exceeds max_frame_width=4096"),
    ("jpeg bomb whose Frame header is small", lambda target: clip_status(target, raw_frames(jpeg=jpeg_bomb(), width=64,
                                                                                          height=48)),
     "declared width 32000 exceeds"),
    ("two png bombs at once", lambda target: run_all([lambda: clip_status(target, raw_frames(png=png_bomb()))] * 2)[1],
     "Frame.png declared width 30000 exceeds max_frame_width=4096"),
])
def test_a_decode_bomb_is_refused_from_its_header_without_allocating(watched, name, call, message):
    status, details = call(watched.target)
    assert status == "INVALID_ARGUMENT" and message in details, (name, status, details)
    assert watched.peak_over_idle() < 256, name  # before: 5.2-5.9 GiB per bomb


def test_a_clip_that_switches_to_huge_frames_is_refused_before_they_are_converted(watched):
    clip = clip_request(size_switch_clip(small=64, big=8000))
    results = run_all([lambda: clip_status(watched.target, clip)] * 4)
    for status, details in results:
        assert status == "INVALID_ARGUMENT" and "clip frame 12 exceeds the frame limit" in details, details
    assert watched.peak_over_idle() < 256  # before: 4.1 GiB for four such calls (16000 px), 3.4 GiB kept


@pytest.mark.parametrize("request_,message", [
    (pb.ClipRequest(frames=pb.RawFrames(frames=[pb.Frame(rgb24=bytes(64 * 48 * 3), width=64, height=48)],
                                        fps=float("inf"))), "RawFrames.fps must be a number in [0, 1000]"),
    (pb.ClipRequest(frames=pb.RawFrames(frames=[pb.Frame(rgb24=bytes(64 * 48 * 3), width=64, height=48)],
                                        fps=-3)), "RawFrames.fps must be a number in [0, 1000]"),
])
def test_a_clip_with_an_impossible_frame_rate_is_refused(watched, request_, message):
    status, details = clip_status(watched.target, request_)
    assert status == "INVALID_ARGUMENT" and message in details


def test_streams_that_never_send_their_config_are_counted_and_timed_out():
    server = Watched("--stream-config-seconds", "5", "--max-streams", "4")
    release = threading.Event()

    def never():
        release.wait(timeout=120)
        yield from ()

    try:
        with ExplainerClient(server.target, timeout=60) as client:
            calls = [client.stub.StreamExplain(never(), timeout=60) for _ in range(6)]
            statuses = []
            for call in calls:
                try:
                    list(call)
                    statuses.append("OK")
                except grpc.RpcError as error:
                    statuses.append((error.code().name, error.details()))
            release.set()
        codes = sorted(status[0] for status in statuses)
        assert codes == ["DEADLINE_EXCEEDED"] * 4 + ["RESOURCE_EXHAUSTED"] * 2, statuses
        assert any("no StreamConfig within 5 s (stream_config_seconds)" in status[1] for status in statuses)
        # once they are gone, a well-behaved stream is admitted
        status, details = stream_status(server.target, pb.StreamConfig(fps=25), [
            pb.StreamRequest(frame=pb.Frame(rgb24=bytes(64 * 48 * 3), width=64, height=48))])
        assert status == "OK", details
    finally:
        release.set()
        server.stop()


# ---------------------------------------------------------------- memory under mixed hostile load

def big_frame_stream(target: str, count: int, lossless: bool) -> tuple[str, str]:
    pixels = bytes(4096 * 4096 * 3)  # a legal 4096x4096 RGB24 frame, 48 MiB
    frames = (pb.StreamRequest(frame=pb.Frame(rgb24=pixels, width=4096, height=4096, sequence=index))
              for index in range(count))
    return stream_status(target, pb.StreamConfig(fps=25, drop_oldest=not lossless), frames)


def test_mixed_hostile_load_stays_within_the_memory_budget_and_the_server_keeps_serving(watched):
    body = np.random.default_rng(0).integers(0, 256, 47 << 20, dtype=np.uint8).tobytes()
    junk_clip = clip_request(body)
    long_clip = clip_request(clip_path("arm_wrestling.mp4"), window=pb.WindowSpec(hop=1))
    calls = ([lambda: clip_status(watched.target, long_clip)] * 2  # keep the model and the clip decoder busy
             + [lambda: big_frame_stream(watched.target, 24, lossless=False)] * 2
             + [lambda: big_frame_stream(watched.target, 12, lossless=True)]
             + [lambda: clip_status(watched.target, junk_clip)] * 16
             + [lambda: clip_status(watched.target, raw_frames(png=png_bomb()))] * 2)
    results = run_all(calls)
    assert {status for status, _ in results} <= {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}, results
    # the long clip calls and big-frame streams are legal: they are explained, or refused for memory with a
    # retry-later message when the budget is full at the moment they start (which depends on the timing)
    assert all(status in ("OK", "RESOURCE_EXHAUSTED") for status, _ in results[:5]), results[:5]
    refused = [details for status, details in results if status == "RESOURCE_EXHAUSTED"]
    assert all("retry later" in details for details in refused), refused
    peak = watched.peak_over_idle()
    assert peak < BUDGET_MIB, f"server peak RSS {peak:.0f} MiB over idle"
    assert watched.alive_and_serving()


def test_bodies_of_unauthenticated_calls_are_never_read(tmp_path):
    token = tmp_path / "token"
    token.write_text("right\n")
    server = Watched("--auth-token-file", str(token), token="right")
    try:
        body = clip_request(bytes(47 << 20))
        wrong = (("authorization", "Bearer wrong"),)
        results = run_all([lambda: clip_status(server.target, body, wrong)] * 16)
        assert {status for status, _ in results} == {"UNAUTHENTICATED"}
        assert server.peak_over_idle() < 256  # before: 1.0 GiB for 16 such calls
    finally:
        server.stop()


# ---------------------------------------------------------------- fairness

def test_a_paced_live_stream_keeps_its_windows_beside_two_long_hop1_clip_calls(watched):
    frames = [np.full((240, 320, 3), index % 256, np.uint8) for index in range(150)]  # 6 s at 25 fps
    long_clip = clip_request(clip_path("arm_wrestling.mp4"), window=pb.WindowSpec(hop=1))
    clips = [threading.Thread(target=clip_status, args=(watched.target, long_clip), daemon=True) for _ in range(2)]
    for thread in clips:
        thread.start()
    run = paced_stream(watched.target, frames, 25.0, timeout=120)
    for thread in clips:
        thread.join(timeout=600)
    assert run.error is None, run.error
    spec = WindowSpec(watched.info.num_frames, watched.info.default_stride)
    expected = len(plan_windows(run.frames_sent, spec))
    # every window of the frames sent arrives, and the server dropped (almost) nothing: before the fix
    # this stream got 1 of 8 windows and lost 185 of 250 frames. Latency is in the hostile benchmark.
    assert len(run.latencies_ms) == expected, (len(run.latencies_ms), expected, run.server_dropped)
    assert run.server_dropped <= 0.05 * run.frames_sent
