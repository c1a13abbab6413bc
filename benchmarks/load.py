"""Load generator: N paced live streams against a server; latency, throughput, drops, errors, RSS.

    staa-bench load [--server HOST:PORT] --streams 4 --fps 25 --seconds 20 [--jpeg] [--hop 10]
    staa-bench load --sweep [--fps 25] [--budget-ms 500] [--min-windows-per-s 2]

Without ``--server`` it starts ``staa-serve --port 0`` in its own process (so its RSS can be read)
and stops it at the end. Frames: a shared clip (``../shared/clips/arm_wrestling.mp4``) looped to
``--seconds``, or SynthKinetics frames when the shared clips are not there. Latency is client
side: last frame of a window sent -> its explanation received. ``--sweep`` raises the stream
count until a run misses the target (p99 over budget, too few explanations per second per
stream, any error, or more than 1 % of frames dropped) and reports the most streams sustained.

Writes load.md and load.csv (one row per run).
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from staa_serve.benchmarks.report import REPORTS, conditions, markdown_table, rss_mb, write_csv, write_markdown
from staa_serve.benchmarks.streams import concurrent_streams, percentiles

COLUMNS = ["streams", "fps", "hop", "seconds", "windows", "windows_per_s", "windows_per_s_per_stream", "p50_ms",
           "p90_ms", "p95_ms", "p99_ms", "dropped_pct", "errors", "server_rss_mb", "sustained"]
SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "clips" / "arm_wrestling.mp4"
SWEEP = (1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 28, 32)  # 32: the default max_streams


def source_frames(seconds: float, fps: float) -> tuple[list[np.ndarray], str]:
    count = int(seconds * fps)
    if SHARED_CLIP.is_file():
        from staa_serve.models.video import decode_clip

        frames, name = list(decode_clip(SHARED_CLIP).frames), SHARED_CLIP.name
    else:
        from staa_serve.models.synthetic.generate import render_clip, sample_clip_spec

        frames, name = list(render_clip(sample_clip_spec(7, num_frames=64)).frames), "SynthKinetics"
    return [frame for frame, _ in zip(itertools.cycle(frames), range(count))], name


class SpawnedServer:
    """``staa-serve --port 0`` in its own process: the real deployment shape, and an RSS to read."""

    def __init__(self, extra_args: list[str] = ()):
        binary = Path(sys.executable).parent / "staa-serve"
        # Without the installed script (a GPU machine's image Python, the tree on PYTHONPATH): the module.
        command = [str(binary)] if binary.exists() else [sys.executable, "-m", "staa_serve.server.app"]
        self.process = subprocess.Popen([*command, "--port", "0", *extra_args], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"staa-serve did not start: {line!r}")
        self.target = line.split("listening on ")[1].split()[0]
        ready = self.process.stdout.readline()
        if "ready on" not in ready:
            raise RuntimeError(f"staa-serve did not get ready: {ready!r}")

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def stream_conditions(server: str | None, clip_name: str, kind: str, fps: float, hop: int,
                      model: str | None = None) -> dict[str, str]:
    """The report header of a benchmark of paced live streams."""
    served = f"model {model}" if model else "default model"
    return conditions({
        "server": f"{server}, {served}" if server else f"staa-serve --port 0 (spawned, {served})",
        "frames": f"{clip_name} looped, {kind}, {fps:g} fps, window every {hop} frames",
        "cpu count": str(os.cpu_count()),
    })


def one_run(target: str, streams: int, fps: float, hop: int, seconds: float, frames, kind: str, server,
            budget_ms: float, min_rate: float, model: str = "") -> dict:
    runs = concurrent_streams(target, streams, frames, fps, hop=hop, kind=kind, model=model)
    latencies = [value for run in runs for value in run.latencies_ms]
    sent = sum(run.frames_sent for run in runs)
    dropped = sum(run.frames_skipped + run.server_dropped for run in runs)
    errors = sum(run.error is not None for run in runs)
    elapsed = max(run.seconds for run in runs)
    row = {"streams": streams, "fps": fps, "hop": hop, "seconds": round(elapsed, 1), "windows": len(latencies),
           "windows_per_s": len(latencies) / elapsed, "windows_per_s_per_stream": len(latencies) / elapsed / streams,
           **percentiles(latencies), "dropped_pct": 100 * dropped / max(1, sent + dropped), "errors": errors,
           "server_rss_mb": server.rss_mb() if server is not None else float("nan")}
    row["sustained"] = bool(row["p99_ms"] <= budget_ms and row["windows_per_s_per_stream"] >= min_rate
                            and errors == 0 and row["dropped_pct"] <= 1.0)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="staa-bench load")
    parser.add_argument("--server", default=None, help="HOST:PORT of a running server (default: spawn one)")
    parser.add_argument("--model", default=None,
                        help="with --server: a served model's name or id; without: the model the spawned server loads")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--hop", type=int, default=10, help="source frames between windows (25 fps / 10 = 2.5 windows/s)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--jpeg", action="store_true", help="send frames as JPEG instead of raw RGB24")
    parser.add_argument("--sweep", action="store_true", help="find the most streams sustained")
    parser.add_argument("--budget-ms", type=float, default=500.0, help="p99 latency budget of a sustained run")
    parser.add_argument("--min-windows-per-s", type=float, default=2.0, help="per stream, for a sustained run")
    parser.add_argument("--out-dir", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    frames, clip_name = source_frames(args.seconds, args.fps)
    kind = "jpeg" if args.jpeg else "rgb24"
    server = SpawnedServer(["--model", args.model] if args.model else []) if args.server is None else None
    model = args.model if args.server else ""  # a spawned server serves only that model: its default
    target = args.server or server.target
    rows = []
    try:
        counts = SWEEP if args.sweep else (args.streams,)
        for streams in tqdm(counts, desc="load runs"):
            rows.append(one_run(target, streams, args.fps, args.hop, args.seconds, frames, kind, server,
                                args.budget_ms, args.min_windows_per_s, model))
            tqdm.write(str({key: round(value, 1) if isinstance(value, float) else value for key, value in rows[-1].items()}))
            if args.sweep and not rows[-1]["sustained"]:
                break
    finally:
        if server is not None:
            server.stop()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(args.out_dir / "load.csv", rows, COLUMNS)
    sustained = [row["streams"] for row in rows if row["sustained"]]
    verdict = (f"Most streams sustained at {args.fps:g} fps input (p99 <= {args.budget_ms:g} ms, >= "
               f"{args.min_windows_per_s:g} explanations/s per stream, no errors, <= 1 % dropped): "
               f"**{max(sustained) if sustained else 0}**.")
    write_markdown(args.out_dir / "load.md", "Load: paced live streams against one server",
                   stream_conditions(args.server, clip_name, kind, args.fps, args.hop, args.model), [verdict, "", markdown_table(rows, COLUMNS), "",
         "Latency: client side, last frame of a window sent -> its explanation received (127.0.0.1). "
         "dropped_pct: frames the sender skipped because it fell behind its clock plus frames the server dropped."])
    print((args.out_dir / "load.md").read_text())


if __name__ == "__main__":
    main()
