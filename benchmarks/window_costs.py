"""Per-window cost of STAA Serve's path on this machine: decode + sample, forward, STAA + postprocess,
and the overhead ratio (forward + STAA) / (forward alone), measured interleaved.

    python -m staa_serve.benchmarks.window_costs [--model ID_OR_DIR] [--pairs 15]

Writes benchmarks/reports/window_costs.{md,csv,png}.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from staa_serve.benchmarks.report import REPORTS, conditions, interleaved, markdown_table, write_csv, write_markdown
from staa_serve.kernels.threshold_focus import threshold_focus
from staa_serve.models.pipeline import Staa
from staa_serve.models.preprocess import model_input
from staa_serve.models.registry import load_model
from staa_serve.models.random_weights import random_config, save_random_model
from staa_serve.models.sampling import WindowSpec
from staa_serve.models.staa import StaaParams
from staa_serve.models.windowing import iter_clip_windows

CLIPS_DIR = Path(__file__).resolve().parents[2] / "shared" / "clips"
CLIPS = ("arm_wrestling.mp4", "flipping_pancake.mkv", "ucf101_apply_eye_makeup.avi")
COLUMNS = ["clip", "windows", "decode_sample_ms", "forward_ms", "staa_postprocess_ms", "forward_plus_staa_ms",
           "ratio_interleaved"]


# TimeSformer-base geometry (facebook/timesformer-base-finetuned-k400) with random weights: the
# cost of a real-size model, since hub weights cannot be downloaded here.
def measure_clip(loaded, staa: Staa, path: Path, pairs: int, params: StaaParams, max_windows: int) -> dict:
    spec = WindowSpec(loaded.num_frames, loaded.default_stride)
    windows = list(iter_clip_windows(path, spec, loaded.processor))[:max_windows]
    height, width = loaded.grid
    plain_ms, full_ms, staa_ms, ratios = [], [], [], []
    for window in tqdm(windows, desc=path.name, leave=False):
        pixels = model_input(window.frames.unsqueeze(0), loaded.processor)  # [1, T, H, W, 3] uint8 -> [1, T, 3, H, W]
        inner = {}

        def plain():
            with torch.inference_mode():
                loaded.model(pixel_values=pixels)

        def explained():
            attribution = staa.attribute_batch(pixels, params)
            started = time.perf_counter()
            threshold_focus(attribution.spatial.flatten(2), (height, width), mode=params.threshold_mode,
                            kappa=params.kappa, percentile=params.percentile, gamma=params.gamma, smooth=params.smooth)
            inner["staa_ms"] = attribution.attribution_ms + (time.perf_counter() - started) * 1e3

        times_plain, times_full, ratio = interleaved(plain, explained, pairs)
        plain_ms.append(statistics.median(times_plain) * 1e3)
        full_ms.append(statistics.median(times_full) * 1e3)
        staa_ms.append(inner["staa_ms"])
        ratios.append(ratio)
    return {
        "clip": path.name,
        "windows": len(windows),
        "decode_sample_ms": statistics.median(window.decode_ms for window in windows),
        "forward_ms": statistics.median(plain_ms),
        "staa_postprocess_ms": statistics.median(staa_ms),
        "forward_plus_staa_ms": statistics.median(full_ms),
        "ratio_interleaved": statistics.median(ratios),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    names = [row["clip"] for row in rows]
    decode = [row["decode_sample_ms"] for row in rows]
    forward = [row["forward_ms"] for row in rows]
    staa = [row["staa_postprocess_ms"] for row in rows]
    axis.barh(names, decode, label="decode + sample + preprocess")
    axis.barh(names, forward, left=decode, label="forward")
    axis.barh(names, staa, left=[a + b for a, b in zip(decode, forward)], label="STAA + postprocess")
    axis.set_xlabel("median ms per window")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.benchmarks.window_costs")
    parser.add_argument("--model", default=None, help="registry name, directory or cached hub id")
    parser.add_argument("--random-base", action="store_true",
                        help="measure a random-weight model of TimeSformer-base geometry instead of --model")
    parser.add_argument("--pairs", type=int, default=15, help="interleaved A/B pairs per window")
    parser.add_argument("--max-windows", type=int, default=1000, help="windows measured per clip")
    parser.add_argument("--name", default="window_costs", help="report file stem")
    parser.add_argument("--clips", type=Path, default=CLIPS_DIR)
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    if args.random_base:
        model_dir = Path(tempfile.mkdtemp(prefix="staa-base-")) / "timesformer-base-random"
        loaded = load_model(str(save_random_model(model_dir, random_config("timesformer", "base"))))
    else:
        loaded = load_model(args.model)
    staa = Staa(loaded)
    params = StaaParams()
    rows = [measure_clip(loaded, staa, args.clips / name, args.pairs, params, args.max_windows)
            for name in tqdm(CLIPS, desc="clips")]
    overall = {column: statistics.median(row[column] for row in rows) for column in COLUMNS[2:]}
    rows.append({"clip": "median of clips", "windows": sum(row["windows"] for row in rows), **overall})
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / args.name
    write_csv(stem.with_suffix(".csv"), rows, COLUMNS)
    plot(rows[:-1], stem.with_suffix(".png"))
    spec = WindowSpec(loaded.num_frames, loaded.default_stride)
    write_markdown(stem.with_suffix(".md"), "Per-window cost of an explanation", conditions({
        "model": f"{loaded.model_id} ({loaded.architecture}, random weights: {loaded.random_weights})",
        "window": f"T={loaded.num_frames} x {loaded.image_size}x{loaded.image_size}, stride {spec.stride}, "
                  f"hop {spec.hop} (one window per {spec.span} source frames), batch 1",
        "STAA params": str(params),
        "timing": f"plain forward (no hooks) and forward+STAA+postprocess interleaved, {args.pairs} pairs per "
                  "window after 3 warm-up pairs; ratio = median of per-pair ratios; ms = medians",
    }), [
        markdown_table(rows, COLUMNS), "",
        "- `decode_sample_ms`: decoding every frame of the clip, converting and preprocessing the sampled "
        "ones, apportioned to the window they complete.",
        "- `forward_ms`: the plain inference forward (fused attention, models/attention.py).",
        "- `staa_postprocess_ms`: STAA's row reads beside the attention, STAA maths and thresholding/focusing.",
        "- `ratio_interleaved`: (forward + STAA + postprocess) / (forward alone).",
        "", f"![window costs]({args.name}.png)",
    ])
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
