"""Kernel benchmark: fused threshold/focus vs the op-by-op PyTorch sequence, and the memory reading
only STAA's rows saves per window.

    python -m staa_serve.benchmarks.kernels [--pairs 15]

Writes benchmarks/reports/kernels.{md,csv,png}. On a CUDA device it times the Triton kernel against
the PyTorch path (interleaved) and reports effective bandwidth as a fraction of the card's peak;
on CPU the Triton kernel only runs in the interpreter, so only the PyTorch path is timed there.
Bytes moved by the fused kernel, per call: 4*B*T*N (read maps) + B*T*N (write q) + 8*B*T (scale, mass).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from staa_serve.benchmarks.report import REPORTS, conditions, interleaved, markdown_table, write_csv, write_markdown
from staa_serve.kernels.attention_rows import column_sum_reference, column_sum_triton
from staa_serve.kernels.threshold_focus import threshold_focus_reference, threshold_focus_triton
from staa_serve.models.registry import load_model
from staa_serve.models.random_weights import random_config, save_random_model

# Peak HBM bandwidth of the cards this project may be lent (GB/s, vendor figures).
PEAK_BANDWIDTH = {"H100": 3350.0, "H200": 4800.0}
BATCHES = (1, 8, 64, 256, 1024)
# A GPU only leaves launch-bound territory with tens of MB per call: the larger batches show the
# bandwidth the fused kernel reaches (serving batches stay small; the small rows show the latency).
GPU_BATCHES = BATCHES + (4096, 16384, 65536)
FRAMES, GRID = 8, (14, 14)
COLUMNS = ["device", "batch", "rows", "patches", "torch_ms", "torch_gbps", "triton_ms", "speedup", "triton_gbps",
           "peak_fraction"]


def bytes_moved(batch: int, frames: int, patches: int) -> int:
    return 4 * batch * frames * patches + batch * frames * patches + 8 * batch * frames


def _synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_threshold_focus(device: str, pairs: int) -> list[dict]:
    rows = []
    peak = next((value for name, value in PEAK_BANDWIDTH.items()
                 if device == "cuda" and name in torch.cuda.get_device_name()), None)
    for batch in tqdm(GPU_BATCHES if device == "cuda" else BATCHES, desc=f"threshold_focus on {device}"):
        maps = torch.rand(batch, FRAMES, GRID[0] * GRID[1], device=device) ** 3

        def run_torch():
            threshold_focus_reference(maps, GRID)
            _synchronise(device)

        def run_triton():
            threshold_focus_triton(maps, GRID)
            _synchronise(device)

        label = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        row = {"device": label, "batch": batch, "rows": batch * FRAMES, "patches": GRID[0] * GRID[1]}
        if device == "cuda":
            torch_times, triton_times, ratio = interleaved(run_torch, run_triton, pairs)
            triton_ms = statistics.median(triton_times) * 1e3
            gbps = bytes_moved(batch, FRAMES, GRID[0] * GRID[1]) / (triton_ms / 1e3) / 1e9
            row |= {"torch_ms": statistics.median(torch_times) * 1e3, "triton_ms": triton_ms, "speedup": 1 / ratio,
                    "triton_gbps": gbps, "peak_fraction": gbps / peak if peak else float("nan")}
        else:
            for _ in range(3):
                run_torch()
            times = []
            for _ in range(pairs):
                started = time.perf_counter()
                run_torch()
                times.append(time.perf_counter() - started)
            row |= {"torch_ms": statistics.median(times) * 1e3, "triton_ms": float("nan"), "speedup": float("nan"),
                    "triton_gbps": float("nan"), "peak_fraction": float("nan")}
        # Effective bandwidth: the fused kernel's byte count over the time taken (what the op-by-op path
        # would need to match the kernel), so the two columns compare directly.
        row["torch_gbps"] = bytes_moved(batch, FRAMES, GRID[0] * GRID[1]) / (row["torch_ms"] / 1e3) / 1e9
        rows.append(row)
    return rows


# Joint attention column sums (models/attention.py, VideoMAE): (label, rows R, heads H, tokens S, head size d).
COLUMN_SUM_SHAPES = (("VideoMAE-base 16x224, batch 1", 1, 12, 1568, 64), ("VideoMAE-base 16x224, batch 8", 8, 12, 1568, 64))
COLUMN_SUM_COLUMNS = ["device", "shape", "sdpa_ms", "reference_ms", "reference_vs_sdpa", "triton_ms", "triton_vs_sdpa",
                      "triton_score_tflops"]


def time_column_sum(device: str, pairs: int) -> list[dict]:
    """``kernels.column_sum``'s implementations against the attention they sit beside (SDPA), per shape.
    Work: one Q K^T product, 2*R*H*S^2*d FLOPs, and R*H*S^2 exponentials (the kernel computes the
    scores twice: its TFLOP/s column counts them once, as useful work)."""
    rows = []
    for label, batch, heads, tokens, head_size in tqdm(COLUMN_SUM_SHAPES, desc=f"column_sum on {device}"):
        qkv = torch.randn(batch, tokens, 3, heads, head_size, device=device).permute(2, 0, 3, 1, 4)  # as a qkv projection lays them out
        query, key, value = qkv[0], qkv[1], qkv[2]
        scale = head_size ** -0.5

        def timed(call):
            def run():
                call()
                _synchronise(device)
            return run

        sdpa = timed(lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=scale))
        reference = timed(lambda: column_sum_reference(query, key, scale))
        sdpa_times, reference_times, reference_ratio = interleaved(sdpa, reference, pairs, warmup=1)
        row = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "shape": label,
               "sdpa_ms": statistics.median(sdpa_times) * 1e3, "reference_ms": statistics.median(reference_times) * 1e3,
               "reference_vs_sdpa": reference_ratio, "triton_ms": float("nan"), "triton_vs_sdpa": float("nan"),
               "triton_score_tflops": float("nan")}
        if device == "cuda":
            triton = timed(lambda: column_sum_triton(query, key, scale))
            _, triton_times, triton_ratio = interleaved(sdpa, triton, pairs, warmup=1)
            triton_ms = statistics.median(triton_times) * 1e3
            row |= {"triton_ms": triton_ms, "triton_vs_sdpa": triton_ratio,
                    "triton_score_tflops": 2 * batch * heads * tokens ** 2 * head_size / (triton_ms / 1e3) / 1e12}
        rows.append(row)
    return rows


def read_rows(path: Path) -> list[dict]:
    """Rows of a kernels.csv written by another run of this benchmark (numbers back to floats)."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    counts = {"batch", "rows", "patches"}
    return [{key: value if key == "device" else int(value) if key in counts else float(value)
             for key, value in row.items()} for row in rows]


def attention_memory(loaded) -> dict:
    """Bytes one window's explanation keeps: every layer's attention vs the reduced record."""
    config = loaded.model.config
    layers, heads, frames = config.num_hidden_layers, config.num_attention_heads, config.num_frames
    patches = (config.image_size // config.patch_size) ** 2
    full = layers * 4 * (frames * heads * (1 + patches) ** 2 + patches * heads * frames ** 2)
    reduced = layers * 4 * (frames * patches + patches * frames)
    pixels = torch.zeros(1, frames, 3, config.image_size, config.image_size)
    with torch.inference_mode():
        returned = loaded.model(pixel_values=pixels, output_attentions=True).attentions  # spatial only (HF)
    measured_spatial = sum(tensor.numel() * tensor.element_size() for tensor in returned)
    return {"model": loaded.model_id, "layers": layers, "heads": heads, "frames": frames, "patches": patches,
            "all_layers_attention_bytes": full, "hf_output_attentions_bytes_measured": measured_spatial,
            "reduced_record_bytes": reduced, "saved_fraction": 1 - reduced / full}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.benchmarks.kernels")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--note", default="", help="anything about the conditions worth stating in the report")
    parser.add_argument("--devices", default="cpu,cuda", help="devices to time, of cpu,cuda (cuda only where present)")
    parser.add_argument("--include", type=Path, action="append", default=[],
                        help="a kernels.csv measured elsewhere (e.g. on a lent GPU) whose rows join this report")
    args = parser.parse_args(argv)
    devices = [device for device in args.devices.split(",") if device != "cuda" or torch.cuda.is_available()]
    rows = [row for device in devices for row in time_threshold_focus(device, args.pairs)]
    column_sums = [row for device in devices for row in time_column_sum(device, max(3, args.pairs // 3))]
    for path in args.include:
        rows += read_rows(path)
    base_dir = Path(tempfile.mkdtemp()) / "timesformer-base-random"
    base = load_model(str(save_random_model(base_dir, random_config("timesformer", "base"))))
    memory = [attention_memory(load_model()), attention_memory(base)]
    memory_columns = list(memory[0])
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "kernels.csv", rows, COLUMNS)
    write_csv(args.out / "kernels_memory.csv", memory, memory_columns)
    write_csv(args.out / "kernels_column_sum.csv", column_sums, COLUMN_SUM_COLUMNS)
    gpu = ("GPU rows: Triton interleaved against the PyTorch path on the same card."
           if any(row["device"] != "cpu" for row in rows) else
           "**No GPU was available for this run**: only the PyTorch path is timed (the Triton kernels run on CPU "
           "only in the interpreter, which is for correctness, not speed). The GPU rows (bandwidth fraction, "
           "speed-up) are produced the first time this benchmark runs on a lent H100/H200.")
    write_markdown(args.out / "kernels.md", "Kernels: fused thresholding and attention reduction", conditions({
        "maps": f"[B, T={FRAMES}, N={GRID[0] * GRID[1]}] float32 (TimeSformer-base patch grid 14x14), kappa 0.5, gamma 2",
        "bytes moved (fused)": "4*B*T*N + B*T*N + 8*B*T",
        "timing": f"median of {args.pairs} runs after 3 warm-up runs; on CUDA interleaved torch/triton pairs",
        **({"note": args.note} if args.note else {}),
    }), [gpu, "", "## threshold_focus", "", markdown_table(rows, COLUMNS), "",
         "## column_sum: a joint attention's column sums beside SDPA", "",
         "Q and K as strided views of a qkv projection; each implementation timed in interleaved pairs against "
         "`scaled_dot_product_attention` on the same Q, K, V (`*_vs_sdpa`: median per-pair ratio). Useful work: "
         "one Q K^T product (2*R*H*S^2*d FLOPs) and R*H*S^2 exponentials; the Triton kernel computes the scores "
         "twice (its log-sum-exp pass, then the probabilities).", "",
         markdown_table(column_sums, COLUMN_SUM_COLUMNS), "",
         "## Memory per window: attention reduction", "",
         "Every layer's attention (spatial [T, H, 1+N, 1+N] and temporal [N, H, T, T], batch 1) against what the "
         "STAA keeps per window: the rows it reads (L x (T*N + N*T) floats; fused attention never holds the rest). HF's `output_attentions` "
         "returns only the spatial part; its measured size is shown too.", "",
         markdown_table(memory, memory_columns)])
    print((args.out / "kernels.md").read_text())


if __name__ == "__main__":
    main()
