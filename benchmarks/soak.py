"""Soak: several paced live streams for a long time; server RSS and latency over time.

    staa-bench soak [--server HOST:PORT] --streams 4 --fps 25 --minutes 10 [--sample-seconds 10]

A leak shows as RSS that keeps climbing after warm-up; a scheduling problem as latency that drifts.
Streams run for the whole time (frames looped); RSS is sampled from /proc every ``--sample-seconds``
(a spawned server only). Writes soak.md, soak.csv (one row per sample) and soak.png.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from staa_serve.benchmarks.load import SpawnedServer, source_frames, stream_conditions
from staa_serve.benchmarks.report import REPORTS, markdown_table, write_csv, write_markdown
from staa_serve.benchmarks.streams import StreamRun, paced_stream, percentiles

COLUMNS = ["minute", "server_rss_mb", "windows", "p50_ms", "p99_ms"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="staa-bench soak")
    parser.add_argument("--server", default=None, help="HOST:PORT of a running server (default: spawn one)")
    parser.add_argument("--model", default=None,
                        help="with --server: a served model's name or id; without: the model the spawned server loads")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--hop", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--out-dir", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    clip, clip_name = source_frames(min(seconds, 60.0), args.fps)
    frames = [frame for frame, _ in zip(itertools.cycle(clip), range(int(seconds * args.fps)))]
    server = SpawnedServer(["--model", args.model] if args.model else []) if args.server is None else None
    model = args.model if args.server else ""  # a spawned server serves only that model: its default
    target = args.server or server.target
    runs: list[StreamRun | None] = [None] * args.streams
    started = time.perf_counter()

    def one(slot: int) -> None:
        runs[slot] = paced_stream(target, frames, args.fps, hop=args.hop, timeout=seconds + 300, model=model)  # deadline past the run

    threads = [threading.Thread(target=one, args=(slot,)) for slot in range(args.streams)]
    for thread in threads:
        thread.start()
    samples = []  # (seconds since start, rss MiB)
    try:
        with tqdm(total=int(seconds), desc="soak", unit="s") as progress:
            while any(thread.is_alive() for thread in threads):
                time.sleep(args.sample_seconds)
                elapsed = time.perf_counter() - started
                samples.append((elapsed, server.rss_mb() if server is not None else float("nan")))
                progress.n = min(int(elapsed), int(seconds))
                progress.refresh()
        for thread in threads:
            thread.join()
    finally:
        if server is not None:
            server.stop()
    # Latency per minute of the run, from every stream's (received at, latency) pairs.
    received = [(at + run.opened - started, latency) for run in runs for at, latency in zip(run.received_at, run.latencies_ms)]
    errors = sum(run.error is not None for run in runs)
    messages = sorted({run.error for run in runs if run.error is not None})
    rows = []
    for minute in range(int(np.ceil(args.minutes))):
        in_minute = [latency for at, latency in received if minute * 60 <= at < (minute + 1) * 60]
        rss = [value for at, value in samples if minute * 60 <= at < (minute + 1) * 60]
        rows.append({"minute": minute + 1, "server_rss_mb": max(rss) if rss else float("nan"),
                     "windows": len(in_minute), **{key: value for key, value in percentiles(in_minute).items()
                                                   if key in ("p50_ms", "p99_ms")}})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(args.out_dir / "soak.csv", rows, COLUMNS)
    plot(samples, received, args.out_dir / "soak.png")
    first, last = rows[0]["server_rss_mb"], rows[-1]["server_rss_mb"]
    settled = rows[min(1, len(rows) - 1)]["server_rss_mb"]
    failures = f" ({'; '.join(messages)})" if messages else ""
    summary = (f"{args.streams} streams x {args.fps:g} fps for {args.minutes:g} min: {len(received)} windows, "
               f"{errors} stream errors{failures}; server RSS {first:.0f} MiB in minute 1, {settled:.0f} MiB in "
               f"minute 2, {last:.0f} MiB in the last minute ({last - settled:+.0f} MiB after warm-up).")
    write_markdown(args.out_dir / "soak.md", "Soak: paced live streams over time",
                   stream_conditions(args.server, clip_name, "rgb24", args.fps, args.hop, args.model), [summary, "", markdown_table(rows, COLUMNS), "", "![RSS and latency over time](soak.png)"])
    print((args.out_dir / "soak.md").read_text())


def plot(samples, received, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, latency) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    memory.plot([at / 60 for at, _ in samples], [rss for _, rss in samples], marker=".")
    memory.set_ylabel("server RSS (MiB)")
    memory.grid(alpha=0.3)
    latency.scatter([at / 60 for at, _ in received], [value for _, value in received], s=2, alpha=0.4)
    latency.set_yscale("log")
    latency.set_ylabel("frame-to-heatmap (ms)")
    latency.set_xlabel("minutes")
    latency.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
