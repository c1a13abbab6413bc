"""Hostile and careless clients against a real ``staa-serve``: status, time and server RSS per attack.

    staa-bench hostile [--only NAME ...] [--out-dir DIR]

Each attack gets a freshly spawned server (default settings unless the attack says otherwise), so
one attack's memory or crash never colours the next. The server's RSS is sampled from /proc every
20 ms; the report gives the status the attacker saw, how long it took, the peak RSS above the idle
server, the RSS left afterwards, and whether the server still answered ``GetModelInfo``. A server
that grows past ``--rss-cap-gib`` above idle is killed (the machine must survive the "before" run).
Writes hostile.md, hostile.csv and hostile.png.
"""

from __future__ import annotations

import argparse
import functools
from fractions import Fraction
import io
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import grpc
import numpy as np

from staa_serve.benchmarks.load import SpawnedServer
from staa_serve.benchmarks.report import REPORTS, conditions, markdown_table, rss_mb, write_csv, write_markdown
from staa_serve.benchmarks.streams import paced_stream, percentiles
from staa_serve.clients.client import ExplainerClient, clip_request
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc

COLUMNS = ["attack", "status", "seconds", "peak_rss_over_idle_mib", "rss_after_over_idle_mib", "still_serving",
           "health_max_ms", "detail"]
GIB = 1 << 30
TOKEN = "right-token"


# ---- hostile payloads -------------------------------------------------------------------------

def jpeg_bomb(width: int = 32000, height: int = 32000) -> bytes:
    """A 16x16 JPEG whose SOF header claims ``width`` x ``height``: a few hundred bytes on the wire."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1])
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_bomb(side: int = 30000) -> bytes:
    """A real ``side`` x ``side`` all-zero greyscale PNG (deflate makes it small on the wire), built
    row by row so the attacker never holds the pixels."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    compressor, parts = zlib.compressobj(9), []
    row = b"\x00" * (side + 1)  # filter byte + one byte per pixel
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def size_switch_clip(small: int = 64, big: int = 16000, frames: int = 24) -> bytes:
    """An MJPEG Matroska clip that starts at ``small`` px and switches to real ``big`` px JPEGs (a flat
    grey image compresses to a few hundred KiB)."""
    import av

    small_jpeg = bytes(cv2.imencode(".jpg", np.full((small, small, 3), 128, np.uint8))[1])
    big_jpeg = bytes(cv2.imencode(".jpg", np.full((big, big, 3), 128, np.uint8))[1])
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width = stream.height = small
        stream.pix_fmt = "yuvj420p"
        for index in range(frames):
            packet = av.Packet(small_jpeg if index < frames // 2 else big_jpeg)
            packet.stream, packet.pts, packet.dts = stream, index, index
            packet.time_base = Fraction(1, 25)
            container.mux(packet)
    return buffer.getvalue()


@functools.cache
def long_clip(loops: int = 3) -> bytes:
    """The shared arm-wrestling clip looped ``loops`` times (H.264 in MP4), for clip calls that run long."""
    import av

    from staa_serve.benchmarks.load import SHARED_CLIP
    from staa_serve.models.video import decode_clip

    decoded = decode_clip(SHARED_CLIP)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(round(decoded.fps)))
        stream.width, stream.height = decoded.frames.shape[2], decoded.frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for _ in range(loops):
            for frame in decoded.frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


# ---- running one attack ---------------------------------------------------------------------

@dataclass
class Outcome:
    status: str
    detail: str = ""


def status_of(error: grpc.RpcError) -> Outcome:
    return Outcome(error.code().name, (error.details() or "")[:160])


def explain_clip(target: str, request: pb.ClipRequest, metadata=None, timeout: float = 60) -> Outcome:
    try:
        with ExplainerClient(target, timeout=timeout) as client:
            windows = sum(1 for _ in client.stub.ExplainClip(request, timeout=timeout, metadata=metadata))
        return Outcome("OK", f"{windows} events")
    except grpc.RpcError as error:
        return status_of(error)


def stream_frames(target: str, config: pb.StreamConfig, frames, timeout: float = 60) -> Outcome:
    def requests():
        yield pb.StreamRequest(config=config)
        yield from frames

    try:
        with ExplainerClient(target, timeout=timeout) as client:
            events = list(client.stub.StreamExplain(requests(), timeout=timeout))
        acks = [event.ack for event in events if event.WhichOneof("event") == "ack"]
        windows = sum(event.WhichOneof("event") == "explanation" for event in events)
        dropped = acks[-1].dropped if acks else 0
        return Outcome("OK", f"{windows} windows, {dropped} frames dropped")
    except grpc.RpcError as error:
        return status_of(error)


def run_all(calls: list[Callable[[], object]]) -> list:
    """Run the calls concurrently, each in its own thread; their results in order."""
    results = [None] * len(calls)

    def run(slot: int) -> None:
        results[slot] = calls[slot]()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def concurrently(calls: list[Callable[[], Outcome]]) -> Outcome:
    outcomes = run_all(calls)
    statuses = sorted({outcome.status for outcome in outcomes})
    return Outcome("/".join(statuses), "; ".join(sorted({outcome.detail for outcome in outcomes}))[:200])


def frame(sequence: int, **data) -> pb.StreamRequest:
    return pb.StreamRequest(frame=pb.Frame(sequence=sequence, **data))


class RssWatch:
    """Samples a process's RSS every 20 ms in a thread; kills it past ``cap_mib`` above ``idle_mib``."""

    def __init__(self, process, idle_mib: float, cap_mib: float):
        self.process, self.idle, self.cap = process, idle_mib, cap_mib
        self.peak, self.killed = idle_mib, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                value = rss_mb(self.process.pid)
            except OSError:
                return
            self.peak = max(self.peak, value)
            if value - self.idle > self.cap and not self.killed:
                self.killed = True
                self.process.kill()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _probe_health(target: str, slowest, stop) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        check(health_pb2.HealthCheckRequest(), timeout=30)
        slowest.value = 0.0  # connected: the attack may start
        while not stop.wait(0.02):
            started = time.perf_counter()
            try:
                check(health_pb2.HealthCheckRequest(), timeout=30)
            except grpc.RpcError:
                pass
            slowest.value = max(slowest.value, time.perf_counter() - started)


class HealthProbe:
    """grpc.health.v1 Check every 20 ms while an attack runs, from a process of its own (the attacker
    building a large request would hold this process's GIL): the slowest answer says how long the
    attack held the server's event loop."""

    def __init__(self, target: str):
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # this process runs gRPC threads: never fork it
        self.slowest, self._stop = context.Value("d", -1.0), context.Event()
        self._process = context.Process(target=_probe_health, args=(target, self.slowest, self._stop), daemon=True)
        self._process.start()
        deadline = time.monotonic() + 60
        while self.slowest.value < 0 and time.monotonic() < deadline and self._process.is_alive():
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._process.join(timeout=60)
        return round(max(self.slowest.value, 0.0) * 1000)


def still_serving(target: str, token: str | None) -> bool:
    try:
        with ExplainerClient(target, timeout=10, token=token) as client:
            client.model_info()
        return True
    except grpc.RpcError:
        return False


def run_attack(name: str, attack: Callable[[str], Outcome], server_args: list[str], cap_mib: float,
               token: str | None = None) -> dict:
    server = SpawnedServer(server_args)
    try:
        time.sleep(1.0)  # let the warm-up's garbage settle before the idle reading
        idle = server.rss_mb()
        watch = RssWatch(server.process, idle, cap_mib)
        health = HealthProbe(server.target)
        started = time.perf_counter()
        outcome = attack(server.target)
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        watch.stop()
        health_max_ms = health.stop()
        alive = server.process.poll() is None
        serving = alive and still_serving(server.target, token)
        after = round(server.rss_mb() - idle) if alive else "-"
        status = outcome.status if alive else f"{outcome.status} (server {'killed at RSS cap' if watch.killed else 'died'})"
        return {"attack": name, "status": status, "seconds": round(seconds, 2),
                "peak_rss_over_idle_mib": round(watch.peak - idle), "rss_after_over_idle_mib": after,
                "still_serving": serving, "health_max_ms": health_max_ms, "detail": outcome.detail.replace("|", "/")}
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


# ---- the attacks ------------------------------------------------------------------------------

def big_frames(streams: int, busy_clip: bytes, seconds: float = 8.0) -> Callable[[str], Outcome]:
    """Legal 4096x4096 RGB24 frames (48 MiB each) sent as fast as possible for ``seconds`` per stream,
    while two hop=1 clip calls keep the server busy (so frames queue up)."""
    pixels = np.zeros((4096, 4096, 3), np.uint8).tobytes()

    def one(target: str) -> Outcome:
        def frames():
            deadline = time.monotonic() + seconds
            sequence = 0
            while time.monotonic() < deadline:
                yield frame(sequence, rgb24=pixels, width=4096, height=4096)
                sequence += 1
        return stream_frames(target, pb.StreamConfig(fps=25), frames(), timeout=120)

    def attack(target: str) -> Outcome:
        busy(target, busy_clip)
        return concurrently([lambda: one(target)] * streams)

    return attack


def busy(target: str, clip: bytes, calls: int = 2) -> None:
    """Start ``calls`` long hop=1 clip calls in the background (they end with the server)."""
    for _ in range(calls):
        threading.Thread(target=explain_clip, args=(target, clip_request(clip, window=pb.WindowSpec(hop=1))),
                         kwargs={"timeout": 600}, daemon=True).start()
    time.sleep(1.0)  # both clip calls decoding and queued


def clip_bodies(calls: int, token: bool = False) -> Callable[[str], Outcome]:
    body = np.random.default_rng(0).integers(0, 256, 47 << 20, dtype=np.uint8).tobytes()
    request = clip_request(body)
    metadata = (("authorization", "Bearer wrong-token"),) if token else None
    return lambda target: concurrently([lambda: explain_clip(target, request, metadata)] * calls)


def silent_calls(target: str, count: int, timeout: float):
    """``count`` StreamExplain calls on one channel that send nothing until ``stall`` is set:
    (channel, calls, stall)."""
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.VideoExplainerStub(channel)
    stall = threading.Event()

    def never():
        stall.wait()
        return
        yield  # noqa: unreachable, makes this a generator

    return channel, [stub.StreamExplain(never(), timeout=timeout) for _ in range(count)], stall


def config_less_streams(count: int = 200, hold: float = 4.0) -> Callable[[str], Outcome]:
    """``count`` streams that open and never send their StreamConfig; a legal stream is tried while they hang."""

    def attack(target: str) -> Outcome:
        channel, calls, stall = silent_calls(target, count, timeout=60)
        time.sleep(hold)
        legal = stream_frames(target, pb.StreamConfig(fps=25),
                              [frame(0, rgb24=bytes(64 * 48 * 3), width=64, height=48)], timeout=30)
        ended = []
        for call in calls:
            try:
                next(call)
            except grpc.RpcError as error:
                ended.append(error.code().name)
            except StopIteration:
                ended.append("OK")
            if len(ended) >= 3:
                break
        stall.set()
        channel.close()
        return Outcome(f"legal stream {legal.status}", f"{legal.detail}; config-less streams ended {sorted(set(ended))}")

    return attack


def fairness(clip: bytes, seconds: float = 10.0) -> Callable[[str], Outcome]:
    """A paced 25 fps live stream beside two long hop=1 clip calls."""
    from staa_serve.benchmarks.load import source_frames

    frames, _ = source_frames(seconds, 25.0)
    frames = frames[: int(seconds * 25)]

    def attack(target: str) -> Outcome:
        busy(target, clip)
        run = paced_stream(target, frames, 25.0, timeout=seconds + 30)
        expected = max(0, (len(frames) - 29) // 30 + 1)  # default stride 4, T 8, window every 30 frames (hop 0)
        stats = percentiles(run.latencies_ms, (50, 99))
        lost = run.frames_skipped + run.server_dropped
        detail = (f"{len(run.latencies_ms)} of ~{expected} windows, p50 {stats['p50_ms']:.0f} ms, "
                  f"p99 {stats['p99_ms']:.0f} ms, {lost} of {len(frames)} frames lost")
        return Outcome(run.error.split(":")[0] if run.error else "OK", detail)

    return attack


# ---- round 2 (issue 31): one small request, large work; RPCs beside ExplainClip; echoed input ----

def unary(target: str, method: str, request, timeout: float = 60) -> Outcome:
    """One unary call by its full method name (staa.v1 or OIP); the status and the size of its details."""
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 256 << 20)]) as channel:
        call = channel.unary_unary(method, request_serializer=lambda message: message.SerializeToString(),
                                   response_deserializer=lambda data: data)
        try:
            call(request, timeout=timeout)
            return Outcome("OK")
        except grpc.RpcError as error:
            details = error.details() or ""
            return Outcome(error.code().name, f"{len(details.encode())} B of details: {details[:100]}")


def empty_frames(count: int) -> pb.ClipRequest:
    frames = pb.RawFrames(fps=25)
    frames.frames.extend([pb.Frame()] * count)
    return pb.ClipRequest(frames=frames)


def model_infer(**changes):
    from staa.oip import grpc_predict_v2_pb2 as oip

    request = oip.ModelInferRequest(model_name="staa")
    shape, data = changes.pop("frames", ([4, 8, 8, 3], bytes(4 * 8 * 8 * 3)))
    if "video" in changes:
        video = changes.pop("video")
        request.inputs.add(name="VIDEO", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(len(video).to_bytes(4, "little") + video)
    elif "uint" in changes:
        request.inputs.add(name="FRAMES", datatype="UINT8", shape=shape)
        request.inputs[0].contents.uint_contents.extend([changes.pop("uint")] * int(np.prod(shape)))
    else:
        request.inputs.add(name="FRAMES", datatype="UINT8", shape=shape)
        request.raw_input_contents.append(data)
    for index in range(changes.pop("parameters", 0)):
        request.parameters[f"p{index}"].int64_param = index
    assert not changes
    return request


INFER = "/inference.GRPCInferenceService/ModelInfer"
MODEL_INFO = "/staa.v1.VideoExplainer/GetModelInfo"


def silent_streams(count: int = 32) -> Callable[[str], Outcome]:
    """``count`` streams from one client that open and send nothing; how long until a configured stream
    of another call is served."""

    def attack(target: str) -> Outcome:
        channel, calls, stall = silent_calls(target, count, timeout=120)
        time.sleep(0.5)
        started, legal = time.perf_counter(), Outcome("not tried")
        while time.perf_counter() - started < 60:
            legal = stream_frames(target, pb.StreamConfig(fps=25),
                                  [frame(0, rgb24=bytes(64 * 48 * 3), width=64, height=48)], timeout=30)
            if legal.status == "OK":
                break
            time.sleep(0.2)
        waited = time.perf_counter() - started
        stall.set()
        for call in calls:
            call.cancel()
        channel.close()
        return Outcome(f"legal stream {legal.status}", f"served after {waited:.1f} s; {legal.detail}")

    return attack


def round_two() -> dict[str, tuple[Callable[[str], Outcome], list[str]]]:
    video = np.random.default_rng(0).integers(0, 256, 47 << 20, dtype=np.uint8).tobytes()
    huge = "x" * (1 << 20)
    return {
        "clip_4M_empty_frames": (lambda t: explain_clip(t, empty_frames(4_000_000)), []),
        "oip_frames_2M_declared": (lambda t: unary(t, INFER, model_infer(
            frames=([2_000_000, 1, 1, 3], bytes(6_000_000)))), []),
        "oip_uint_contents_300": (lambda t: unary(t, INFER, model_infer(uint=300)), []),
        "oip_1M_parameters": (lambda t: unary(t, INFER, model_infer(parameters=1_000_000)), []),
        "oip_malformed_protobuf": (lambda t: unary(t, INFER, pb.ClipRequest(clip=b"\xff" * 64, model="\n\xff")), []),
        "model_name_1MiB": (lambda t: unary(t, MODEL_INFO, pb.ModelInfoRequest(model=huge)), []),
        "model_infer_16x47MiB": (lambda t: concurrently([lambda: unary(t, INFER, model_infer(video=video))] * 16), []),
        "model_info_16x60MiB": (lambda t: concurrently(
            [lambda: unary(t, MODEL_INFO, pb.ModelInfoRequest(model="x" * (60 << 20)))] * 16), []),
        "silent_streams_32": (silent_streams(), []),
    }


def attacks(names: list[str] | None) -> dict[str, tuple[Callable[[str], Outcome], list[str]]]:
    bomb, png = jpeg_bomb(), png_bomb()
    raw = lambda data: pb.ClipRequest(frames=pb.RawFrames(frames=[pb.Frame(**data)], fps=25))  # noqa: E731
    table = {
        "jpeg_bomb_live": (lambda t: stream_frames(t, pb.StreamConfig(fps=25), [frame(0, jpeg=bomb)]), []),
        "jpeg_bomb_clip_frames": (lambda t: explain_clip(t, raw(dict(jpeg=bomb))), []),
        "jpeg_over_opencv_limit": (lambda t: explain_clip(t, raw(dict(jpeg=jpeg_bomb(40000, 40000)))), []),
        "jpeg_bomb_header_mismatch": (lambda t: explain_clip(t, raw(dict(jpeg=bomb, width=64, height=48))), []),
        "png_bomb_clip_frames": (lambda t: explain_clip(t, raw(dict(png=png))), []),
        "png_bomb_x2": (lambda t: concurrently([lambda: explain_clip(t, raw(dict(png=png)))] * 2), []),
        "big_frames_1_stream": (lambda t: big_frames(1, long_clip())(t), []),
        "big_frames_2_streams": (lambda t: big_frames(2, long_clip())(t), []),
        "clip_bodies_16x47MiB": (clip_bodies(16), []),
        "clip_bodies_16x47MiB_no_token": (clip_bodies(16, token=True), ["--auth-token-file", "{token}"]),
        "clip_size_switch_x4": (lambda t, clip=clip_request(size_switch_clip()):
                                concurrently([lambda: explain_clip(t, clip)] * 4), []),
        "stream_fps_nan": (lambda t: stream_frames(t, pb.StreamConfig(fps=float("nan")), []), []),
        "clip_fps_inf": (lambda t: explain_clip(t, pb.ClipRequest(frames=pb.RawFrames(
            frames=[pb.Frame(rgb24=bytes(64 * 48 * 3), width=64, height=48)], fps=float("inf")))), []),
        "config_less_streams_200": (config_less_streams(), ["--stream-idle-seconds", "3"]),
    }
    table["fairness_2_hop1_clips"] = (lambda t: fairness(long_clip())(t), [])
    table.update(round_two())
    return {name: value for name, value in table.items() if names is None or name in names}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="staa-bench hostile")
    parser.add_argument("--only", nargs="*", default=None, help="attack names (default: all)")
    parser.add_argument("--out-dir", type=Path, default=REPORTS)
    parser.add_argument("--name", default="hostile", help="report file stem")
    parser.add_argument("--rss-cap-gib", type=float, default=8.0, help="kill a server that grows this much")
    args = parser.parse_args(argv)
    token_file = args.out_dir / ".hostile-token"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    token_file.write_text(TOKEN + "\n")
    rows = []
    try:
        for name, (attack, server_args) in attacks(args.only).items():
            token = TOKEN if any("{token}" in arg for arg in server_args) else None
            server_args = [arg.replace("{token}", str(token_file)) for arg in server_args]
            row = run_attack(name, attack, server_args, args.rss_cap_gib * 1024, token)
            print(" | ".join(str(row[column]) for column in COLUMNS), flush=True)
            rows.append(row)
    finally:
        token_file.unlink(missing_ok=True)
    write_csv(args.out_dir / f"{args.name}.csv", rows, COLUMNS)
    plot(rows, args.out_dir / f"{args.name}.png")
    write_markdown(args.out_dir / f"{args.name}.md", "Hostile and careless clients against staa-serve",
                   conditions({"server": "staa-serve --port 0 (spawned per attack, default model and limits)"}),
                   [markdown_table(rows, COLUMNS), "", *before_line(args.name),
                    "`health_max_ms`: the slowest grpc.health.v1 Check, probed every 20 ms from a process of its "
                    "own while the attack ran.", "", f"![peak RSS per attack]({args.name}.png)"])


def before_line(name: str) -> list[str]:
    """The report's pointer to the same attacks against the server before their fixes (NAME_before.md)."""
    return [] if name.endswith("_before") else [f"The same attacks before their fixes: {name}_before.md.", ""]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    names = [row["attack"] for row in rows]
    axis.barh(names, [row["peak_rss_over_idle_mib"] for row in rows])
    axis.axvline(1536, color="red", linestyle="--", label="1.5 GiB budget")
    axis.set_xlabel("server peak RSS above idle (MiB)")
    axis.invert_yaxis()
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
