"""``staa-viewer``: a live overlay of STAA on the video, in the browser.

    staa-viewer SOURCE --server HOST:PORT [--port HTTP_PORT] [--robustness fgsm --every 4]

SOURCE is a video file (played at its own fps, looping), a camera device (index or path), or
``synthetic`` (SynthKinetics clips). The viewer streams the frames through ``StreamExplain`` and
serves a page on 127.0.0.1 (HTTP + one WebSocket): the current frame with the heatmap blended on
it, top-k predictions, the window's frame importance, robustness scores when asked for, and live
counters. Only uint8 patch grids cross the WebSocket; the browser upsamples and colours them with
the lookup tables of ``clients.overlay`` (served as /colormaps.json), by the same blending rule.

The page shows the source (a camera, perhaps), so it is served to its own origin only: every
request must name the viewer's own address in ``Host`` (a page on another site cannot reach it by
DNS rebinding), and the WebSocket must come from the viewer's own page (``Origin``);
``--allow-origin`` widens that. ``--page-token-file`` additionally requires ``?token=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hmac
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc
from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractAccessLogger

from staa_serve.clients.client import AsyncExplainerClient, frame_request, robustness_options
from staa_serve.clients.overlay import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, colormap_lut
from staa_serve.clients.results import robustness_to_dict
from staa_serve.clients.viewer.sources import open_source
from staa import package_version, quoted
from staa.v1 import explainer_pb2 as pb

STATIC = Path(__file__).parent / "static"
JPEG_QUALITY = 80
logger = logging.getLogger("staa-viewer")


# The forward-only methods: a live overlay keeps the stream's pace (gradient methods run on the
# server's lower-priority lane, behind every heatmap; staa-client explain --method offers them).
VIEWER_METHODS = {"staa": pb.METHOD_STAA, "staa_class": pb.METHOD_STAA_CLASS}


@dataclass
class ViewerState:
    """Counters and options shared by the stream task and the web handlers (one event loop)."""

    threshold: bool = True
    focus: bool = True
    method: str = "staa"  # one of VIEWER_METHODS
    model: str = ""  # the served model the stream asks for (its served name, once known)
    models: list[str] = field(default_factory=list)  # every model the server serves
    restart: asyncio.Event = field(default_factory=asyncio.Event)
    frames_sent: int = 0
    frames_dropped_here: int = 0  # the viewer fell behind the source's clock and skipped them
    frames_dropped_server: int = 0  # reported by the server's Acks (summed over streams)
    windows: int = 0
    robustness_events: int = 0
    latencies_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))
    send_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=60))

    def staa_options(self, top_k: int) -> pb.StaaOptions:
        """Thresholding off = keep everything (kappa -10); focusing off = gamma 1 (no sharpening)."""
        options = pb.StaaOptions(top_k=top_k, method=VIEWER_METHODS[self.method])
        if not self.threshold:
            options.kappa = -10.0
        if not self.focus:
            options.gamma = 1.0
        return options

    def options_message(self) -> dict:
        return {"type": "options", "threshold": self.threshold, "focus": self.focus, "method": self.method,
                "methods": list(VIEWER_METHODS), "model": self.model, "models": self.models}

    def stats(self) -> dict:
        times = list(self.send_times)
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        latencies = sorted(self.latencies_ms)
        return {"type": "stats", "frames_sent": self.frames_sent, "fps": round(fps, 2), "windows": self.windows,
                "dropped": self.frames_dropped_here + self.frames_dropped_server,
                "latency_ms": round(self.latencies_ms[-1], 1) if latencies else None,
                "latency_p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
                "robustness_events": self.robustness_events}


class Hub:
    """The open WebSockets; a message goes to all of them (a closed one is dropped)."""

    def __init__(self):
        self.sockets: set[web.WebSocketResponse] = set()
        self.hello: dict = {"type": "hello"}

    async def send(self, message: dict) -> None:
        text = json.dumps(message)
        for socket in list(self.sockets):
            try:
                await socket.send_str(text)
            except (ConnectionError, RuntimeError):
                self.sockets.discard(socket)


def explanation_message(explanation: pb.Explanation, frame_ids: list[int], latency_ms: float) -> dict:
    grid = explanation.spatial
    return {"type": "explanation", "window": explanation.window_index, "frame_ids": frame_ids,
            "grid": [grid.frames, grid.height, grid.width],
            "heatmaps": base64.b64encode(grid.data).decode(),  # uint8 [T, h, w], row-major
            "temporal": list(explanation.temporal), "crop": [explanation.crop.x0, explanation.crop.y0,
                                                             explanation.crop.x1, explanation.crop.y1],
            "topk": [{"label": score.label, "prob": score.probability} for score in explanation.topk],
            "latency_ms": round(latency_ms, 1), "forward_ms": round(explanation.timings.forward_ms, 2),
            "method": pb.Method.Name(explanation.params.method).removeprefix("METHOD_").lower(),
            "target_class": explanation.params.target_class}


def robustness_message(robustness: pb.Robustness) -> dict:
    return {"type": "robustness", **robustness_to_dict(robustness)}


async def stream_once(client: AsyncExplainerClient, frames, fps: float, first_id: int, state: ViewerState, hub: Hub,
                      args) -> tuple[bool, int]:
    """One StreamExplain over ``frames`` until they run out (True) or an option changed (False)."""
    sent_at: dict[int, float] = {}
    sequence = 0
    exhausted = False
    state.restart.clear()
    loop = asyncio.get_running_loop()

    async def requests():
        nonlocal sequence, exhausted
        yield pb.StreamRequest(config=pb.StreamConfig(
            model=state.model, staa=state.staa_options(args.top_k), fps=fps, drop_oldest=True,  # live: skip rather than lag
            robustness=robustness_options(args.robustness, args.epsilon, args.every)))
        started = loop.time()
        for frame in frames:
            if state.restart.is_set():
                return
            due = started + sequence / fps
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > 2.0 / fps:  # behind the source's clock: skip rather than lag further
                state.frames_dropped_here += 1
                started += 1.0 / fps
                continue
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
            await hub.send({"type": "frame", "id": first_id + sequence, "width": frame.shape[1],
                            "height": frame.shape[0], "jpeg": base64.b64encode(jpeg).decode()})
            sent_at[sequence] = time.perf_counter()
            state.frames_sent += 1
            state.send_times.append(time.perf_counter())
            kind = "jpeg" if args.jpeg else "rgb24"
            yield frame_request(frame, sequence, fps, kind)
            sequence += 1
        exhausted = True

    dropped_before = state.frames_dropped_server
    async for event in client.stub.StreamExplain(requests(), metadata=client.metadata):
        kind = event.WhichOneof("event")
        if kind == "explanation":
            explanation = event.explanation
            latency = (time.perf_counter() - sent_at[explanation.source_frames[-1]]) * 1e3
            state.windows += 1
            state.latencies_ms.append(latency)
            await hub.send(explanation_message(explanation, [first_id + int(i) for i in explanation.source_frames],
                                               latency))
            await hub.send(state.stats())
        elif kind == "robustness":
            state.robustness_events += 1
            await hub.send(robustness_message(event.robustness))
        elif kind == "ack":
            state.frames_dropped_server = dropped_before + event.ack.dropped
            await hub.send(state.stats())
    return exhausted, first_id + sequence


class ServerUnreachable(Exception):
    """The STAA Serve server could not be reached or refused the viewer (one line for the user)."""


async def stream_forever(source, state: ViewerState, hub: Hub, args) -> None:
    """Stream the source pass after pass; a changed option re-opens the stream where it was."""
    next_id = 0
    root = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    async with AsyncExplainerClient(args.server, root_certificates=root, token=token, timeout=None) as client:
        async def introduce(model: str) -> None:
            """The model the stream will ask for, described to the page (hello) with the served models."""
            info = await client.stub.GetModelInfo(pb.ModelInfoRequest(model=model), timeout=30,
                                                  metadata=client.metadata, wait_for_ready=False)
            state.model, state.models = info.name, list(info.served_models)
            hub.hello = {"type": "hello", "source": source.name, "fps": source.fps, "model": info.name,
                         "labels": list(info.labels), "grid": [info.grid_height, info.grid_width],
                         "colormaps": sorted(COLORMAPS), "colormap": DEFAULT_COLORMAP, "alpha": DEFAULT_ALPHA,
                         "robustness": args.robustness}
            await hub.send(hub.hello)
            await hub.send(state.options_message())

        try:
            await introduce(args.model)
        except grpc.aio.AioRpcError as error:
            raise ServerUnreachable(f"cannot use STAA Serve at {args.server}: {error.code().name}: "
                                    f"{error.details()}") from None
        for frames in source.passes():
            frames = iter(frames)
            while True:
                try:
                    exhausted, next_id = await stream_once(client, frames, source.fps, next_id, state, hub, args)
                except grpc.aio.AioRpcError as error:
                    logger.error("stream failed: %s: %s", error.code().name, error.details())
                    await hub.send({"type": "error", "message": f"{error.code().name}: {error.details()}"})
                    await asyncio.sleep(1.0)
                    exhausted = False
                if state.model != hub.hello["model"]:  # the page chose another served model
                    await introduce(state.model)
                if exhausted:
                    break


@dataclass
class Access:
    """Who may use the page: the hosts it answers to, the origins its WebSocket accepts, a token.
    ``port`` is set once bound (port 0 picks one); until then every request is refused."""

    bind_host: str = "127.0.0.1"
    allowed_origins: frozenset[str] = frozenset()
    token: str | None = None
    port: int | None = None

    def hosts(self) -> set[str]:
        names = {self.bind_host, "127.0.0.1", "localhost", "[::1]"} if self.bind_host in LOOPBACK else {self.bind_host}
        return {f"{name}:{self.port}" for name in names}

    def refusal(self, request: web.Request, websocket: bool) -> str | None:
        """Why ``request`` is refused, or None."""
        if self.port is None:
            return "the viewer is starting"
        host = request.headers.get("Host", "")
        if host not in self.hosts():
            return f"Host {quoted(host)} is not this viewer's address"
        # Compared as UTF-8 bytes: compare_digest refuses a str with non-ASCII characters (a 500 before).
        if self.token is not None and not hmac.compare_digest(request.query.get("token", "").encode(),
                                                              self.token.encode()):
            return "missing or wrong ?token="
        if websocket:
            origin = request.headers.get("Origin")
            if origin is None:
                return "a WebSocket without an Origin header"
            if origin not in {f"http://{name}" for name in self.hosts()} | self.allowed_origins:
                return f"Origin {quoted(origin)} is not this viewer's page (--allow-origin widens this)"
        return None


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class EscapedAccessLogger(AbstractAccessLogger):
    """One access line per request, with the request line as sent (still percent-encoded) and quoted:
    aiohttp's default line decodes the path, so a %0A in it forged a second line."""

    def log(self, request, response, time):
        self.logger.info("%s %s %s %d %.1f ms", request.remote, quoted(request.method), quoted(request.raw_path),
                         response.status, time * 1000)


def build_app(state: ViewerState, hub: Hub, access: Access) -> web.Application:
    @web.middleware
    async def same_origin(request, handler):
        reason = access.refusal(request, websocket=request.path == "/ws")
        if reason is not None:
            logger.warning("refused %s %s from %s: %s", quoted(request.method), quoted(request.raw_path),
                           request.remote, reason)
            raise web.HTTPForbidden(text=f"forbidden: {reason}\n")
        return await handler(request)

    async def index(request):
        return web.FileResponse(STATIC / "index.html")

    async def colormaps(request):
        return web.json_response({name: colormap_lut(name).tolist() for name in COLORMAPS})

    async def socket(request):
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        hub.sockets.add(ws)
        await ws.send_str(json.dumps(hub.hello))
        await ws.send_str(json.dumps(state.options_message()))
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except ValueError as error:
                await ws.send_str(json.dumps({"type": "error", "message": f"bad message ignored: {error}"}))
                continue
            if data.get("type") == "options":  # toggles: re-open the stream with the new StaaOptions
                state.threshold, state.focus = bool(data.get("threshold", True)), bool(data.get("focus", True))
                method = data.get("method", "staa")
                state.method = method if method in VIEWER_METHODS else state.method  # unknown: keep the current one
                model = data.get("model", state.model)
                state.model = model if model in state.models else state.model
                state.restart.set()
                await hub.send(state.options_message())
        hub.sockets.discard(ws)
        return ws

    app = web.Application(middlewares=[same_origin])
    app.router.add_get("/", index)
    app.router.add_get("/colormaps.json", colormaps)
    app.router.add_get("/ws", socket)
    app.router.add_static("/static/", STATIC)
    return app


async def serve(args) -> None:
    source = open_source(args.source)
    state, hub = ViewerState(), Hub()
    token = Path(args.page_token_file).read_text().strip() if args.page_token_file else None
    access = Access(args.host, frozenset(args.allow_origin), token)
    app = build_app(state, hub, access)
    runner = web.AppRunner(app, access_log_class=EscapedAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    access.port = port
    query = f"?token={token}" if token else ""
    print(f"viewer on http://{args.host}:{port}/{query} (source {source.name}, server {args.server})", flush=True)
    try:
        await stream_forever(source, state, hub, args)
    finally:
        await runner.cleanup()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="staa-viewer", description="Watch STAA live in the browser.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("source", help="video file, camera device (index or path), or 'synthetic'")
    parser.add_argument("--server", default="127.0.0.1:50051", help="STAA Serve HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1", help="where the page is served (loopback by default)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (0 = any free port)")
    parser.add_argument("--model", default="", help="a served model's name or id (default: the server's default model)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--jpeg", action="store_true", help="send frames to the server as JPEG")
    parser.add_argument("--robustness", choices=["off", "noise", "fgsm", "pgd"], default="off")
    parser.add_argument("--epsilon", type=float, default=None, help="/255 units (server default 4)")
    parser.add_argument("--every", type=int, default=0, help="score every n-th window (0 = server default)")
    parser.add_argument("--tls-ca", default=None, help="PEM root certificate(s): reach the server over TLS")
    parser.add_argument("--token-file", default=None, help="file holding the server's bearer token")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="also accept the WebSocket from this origin (e.g. https://dash.example); repeatable")
    parser.add_argument("--page-token-file", default=None,
                        help="file holding a token the page URL must carry (?token=...)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError, ServerUnreachable) as error:
        print(f"staa-viewer: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
