"""The GPU check in one command: throughput with and without STAA, latency, live streams sustained,
the kernels' CUDA test lane and bandwidth. Prepared to run on a lent H100/H200 in a few minutes;
``--device cpu --quick`` runs the same code on small sizes anywhere (the dry run).

    python -m staa_serve.benchmarks.gpu [--device auto] [--dtype auto] [--quick] [--out DIR]
    staa-bench gpu ...

Per model (random-weight TimeSformer-base 8x224 and VideoMAE-base 16x224; tiny configs with
``--quick``) and batch, both from uint8 windows in host memory, as the server holds them: windows/s
of the plain served forward (upload, normalise, fused forward) and of the served explanation path
(``ExplanationPipeline.explain``: the same + STAA's rows and maths + ``threshold_focus`` + results to
the host), timed in interleaved pairs; ``staa_ratio`` is the median per-pair ratio; at batch 1 the
explanation's p50/p99 latency. Then the most paced live 25 fps
streams (a window every 10 frames) one ``staa-serve`` on the device sustains with p99 <= 250 ms
(load generated on this machine's CPUs, ``benchmarks/load.py``), for TimeSformer-base. On CUDA also
the device test lane (``STAA_TEST_DEVICE=cuda pytest`` over ``DEVICE_TESTS``: kernels compiled, models,
gRPC end to end with the server on the GPU) and the threshold/focus kernel's bandwidth.

The device needs what its image lacks: ``make gpu-wheels`` downloads them into ``.whl`` here (README,
"The GPU check").

Writes gpu.md and gpu.csv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from staa_serve.benchmarks.report import REPORTS, conditions, interleaved, markdown_table, write_csv, write_markdown
from staa_serve.benchmarks.streams import percentiles
from staa_serve.models.devices import resolve_device, resolve_dtype
from staa_serve.models.pipeline import ExplanationPipeline
from staa_serve.models.preprocess import CropBox, model_input
from staa_serve.models.random_weights import random_config, save_random_model
from staa_serve.models.registry import load_model
from staa_serve.models.sampling import WindowPlan
from staa_serve.models.windowing import PreparedWindow

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["device", "model", "dtype", "batch", "windows_per_s", "plain_windows_per_s", "staa_ratio", "p50_ms",
           "p99_ms", "streams_sustained"]
# The tests STAA_TEST_DEVICE moves to the GPU (tests/conftest.py): the rest of the suite is host logic.
DEVICE_TESTS = ("tests/kernels", "tests/models/test_attention.py", "tests/models/test_preprocess.py",
                "tests/models/test_devices.py", "tests/server/test_architectures.py", "tests/server/test_lifecycle.py",
                "tests/server/test_several_models.py")
SIZES = {False: ("base", (1, 8, 32, 64), (25, 50, 75, 100, 150, 200)), True: ("tiny", (1, 2), (1, 2))}


def host_windows(loaded, batch: int) -> list[PreparedWindow]:
    """``batch`` windows of random uint8 crops in host memory, as the server's assembler emits them."""
    size, frames = loaded.image_size, loaded.num_frames
    pixels = torch.randint(0, 256, (batch, frames, size, size, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))  # [B, T, H, W, 3]
    return [PreparedWindow(WindowPlan(index, tuple(range(frames))), pixels[index], CropBox(0, 0, size, size),
                           (size, size), 25.0, 0.0) for index in range(batch)]


def throughput(name: str, loaded, batch: int, pairs: int) -> dict:
    """Windows/s of the plain served forward and of the explanation path at ``batch``, interleaved."""
    device = loaded.device
    windows = host_windows(loaded, batch)
    pipeline = ExplanationPipeline(loaded)
    params = pipeline.staa.params

    def plain():
        with torch.inference_mode():
            frames = torch.stack([window.frames for window in windows])  # [B, T, H, W, 3] uint8
            loaded.adapter.forward(model_input(frames, loaded.processor, device)).argmax(-1).cpu()

    def explained():
        pipeline.explain(windows, params)

    plain_times, staa_times, ratio = interleaved(plain, explained, pairs, warmup=3)
    row = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "model": name,
           "dtype": str(loaded.dtype).removeprefix("torch."), "batch": batch,
           "windows_per_s": batch / statistics.median(staa_times), "plain_windows_per_s": batch / statistics.median(plain_times),
           "staa_ratio": ratio, "p50_ms": float("nan"), "p99_ms": float("nan"), "streams_sustained": ""}
    if batch == 1:  # one window's latency through the explanation path, as a lone live window sees it
        latencies = percentiles([seconds * 1e3 for seconds in staa_times], points=(50, 99))
        row |= {"p50_ms": latencies["p50_ms"], "p99_ms": latencies["p99_ms"]}
    return row


def streams_sustained(model_dir: Path, device: str, dtype: str, counts: tuple[int, ...], seconds: float) -> tuple[int, list[dict]]:
    """The most paced 25 fps streams one spawned server sustains (p99 <= 250 ms, >= 2 windows/s each)."""
    from staa_serve.benchmarks.load import SpawnedServer, one_run, source_frames

    frames, _ = source_frames(seconds, 25.0)
    server = SpawnedServer(["--model", str(model_dir), "--device", device, "--dtype", dtype, "--max-batch", "64",
                            "--max-streams", str(max(counts)), "--decode-workers", str(max(2, (os.cpu_count() or 2) // 2))])
    runs = []
    try:
        for count in counts:
            runs.append(one_run(server.target, count, 25.0, 10, seconds, frames, "rgb24", server, 250.0, 2.0))
            if not runs[-1]["sustained"]:
                break
    finally:
        server.stop()
    sustained = [run["streams"] for run in runs if run["sustained"]]
    return (max(sustained) if sustained else 0), runs


def device_lane(device: torch.device) -> str:
    """The device-parametrised tests on the GPU: kernels compiled (the CPU suite runs them in the
    interpreter), attention and preprocessing on CUDA, gRPC servers with their model on CUDA."""
    if device.type != "cuda":
        return "not run (no CUDA device; `make test` runs the same tests on the CPU)"
    environment = dict(os.environ, STAA_TEST_DEVICE=str(device), TRITON_INTERPRET="0")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DEVICE_TESTS], cwd=REPO,
                            env=environment, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return f"exit {result.returncode}: {lines[-1] if lines else result.stderr[-300:]}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny models, two batches, two stream counts: the dry run")
    parser.add_argument("--pairs", type=int, default=None, help="interleaved pairs per row (default 20, 3 with --quick)")
    parser.add_argument("--stream-seconds", type=float, default=None, help="seconds per stream run (default 12, 4 with --quick)")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    device = resolve_device(args.device)
    dtype_name = str(resolve_dtype(args.dtype, device)).removeprefix("torch.")
    size, batches, stream_counts = SIZES[args.quick]
    pairs = args.pairs or (3 if args.quick else 20)
    rows, stream_rows = [], []
    with tempfile.TemporaryDirectory() as scratch:
        directories = {f"{architecture}-{size}": save_random_model(Path(scratch) / architecture, random_config(architecture, size))
                       for architecture in ("timesformer", "videomae")}
        for name, directory in directories.items():
            loaded = load_model(str(directory), device=str(device), dtype=dtype_name)
            for batch in tqdm(batches, desc=name):
                rows.append(throughput(name, loaded, batch, pairs))
            del loaded
            if device.type == "cuda":
                torch.cuda.empty_cache()
        first = next(iter(directories))
        sustained, stream_rows = streams_sustained(directories[first], str(device), dtype_name, stream_counts,
                                                   args.stream_seconds or (4.0 if args.quick else 12.0))
        next(row for row in rows if row["model"] == first and row["batch"] == 1)["streams_sustained"] = sustained
    lane = device_lane(device)
    kernel_rows = []
    if device.type == "cuda":
        from staa_serve.benchmarks.kernels import time_threshold_focus

        kernel_rows = [row for row in time_threshold_focus("cuda", 10) if row["batch"] >= 4096]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "gpu.csv", rows, COLUMNS)
    stream_columns = ["streams", "windows_per_s", "p50_ms", "p99_ms", "dropped_pct", "errors", "sustained"]
    write_markdown(args.out / "gpu.md", "GPU check: throughput, latency, live streams, kernels", conditions({
        "device": rows[0]["device"], "dtype": dtype_name,
        "models": f"random-weight TimeSformer-{size} and VideoMAE-{size}, fused attention",
        "timing": f"{pairs} interleaved pairs per row (plain forward vs explanation path), medians",
        "torch cuda": str(torch.version.cuda), "wall": f"{time.perf_counter() - started:.0f} s",
    }), [
        "## Throughput and latency", "", markdown_table(rows, COLUMNS), "",
        "Both from uint8 windows in host memory. `windows_per_s`: the served explanation path (upload, normalise, "
        "fused forward, STAA, threshold/focus, results to the host); `plain_windows_per_s`: upload, normalise and "
        "the fused forward alone; `staa_ratio`: median per-pair time ratio of the two; latency at batch 1 only.", "",
        f"## Live streams ({first}, 25 fps, a window every 10 frames, p99 <= 250 ms)", "",
        markdown_table(stream_rows, stream_columns), "",
        "## Kernels", "", f"Device test lane ({' '.join(DEVICE_TESTS)}): {lane}", "",
        markdown_table(kernel_rows, list(kernel_rows[0])) if kernel_rows else "Bandwidth: not measured (no CUDA device).",
    ])
    print((args.out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
