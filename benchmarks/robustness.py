"""Robustness under attack (ARCHITECTURE §6): accuracy and explanation deviation against epsilon,
and what the robustness lane costs a live stream's heatmap latency.

    staa-bench robustness [--clips 48] [--epsilons 1,2,4,8] [--quick] [--out-dir benchmarks/reports]
    staa-bench robustness --latency-only [--streams 1] [--repeats 3]

Part 1, on held-out SynthKinetics windows (rendered, H.264, decoded, windowed as the server does),
for noise, FGSM and PGD-5 at each epsilon: top-1 accuracy against the ground truth, flip rate,
prediction robustness, and the deviation between the clean and the attacked explanation, for STAA
and for Saliency (a gradient baseline) under the very same perturbed windows.

Part 2: live streams paced at the clip's frame rate through a real server on 127.0.0.1, with
robustness off and with FGSM on every 4th window; client-side heatmap latency (last frame of a
window sent -> its explanation received), p50 / p99.

Writes robustness.md, robustness.csv, robustness_latency.csv and robustness.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from staa_serve.benchmarks.report import REPORTS, conditions, markdown_table, write_csv, write_markdown
from staa_serve.benchmarks.streams import concurrent_streams, percentiles
from staa_serve.models.registry import load_model
from staa_serve.models.robustness import AttackSpec, RobustnessScorer, explanation_deviation
from staa_serve.models.synthetic.__main__ import clip_seed
from staa_serve.models.synthetic.evaluate import EVALUATION_SEED, held_out_window
from staa_serve.models.xai import build_method

ATTACKS = (("noise", 0), ("fgsm", 0), ("pgd", 5))
DEVIATION = ["spatial_top10_iou", "spearman", "kendall_tau", "com_shift", "explanation_resilience"]
COLUMNS = ["attack", "epsilon", "clips", "accuracy", "flip_rate", "prediction_robustness", "ms_per_window",
           *[f"staa_{name}" for name in DEVIATION], *[f"saliency_{name}" for name in DEVIATION]]
LATENCY_COLUMNS = ["robustness", "streams", "windows", "p50_ms", "p90_ms", "p99_ms", "max_ms", "robustness_events",
                   "robustness_skipped"]
SEED_OFFSET = 21  # held-out clips of their own: EVALUATION_SEED + 21


def deviations(method, clean, attacked_pixels: torch.Tensor, target: torch.Tensor, grid) -> list[dict]:
    """Per window, how far ``method``'s explanation moved from ``clean`` (its attribution of the clean
    windows, computed once for every attack) for the same target class."""
    attacked = method.attribute(attacked_pixels, target=target)
    return [explanation_deviation(clean.spatial[row].flatten(1).numpy(), clean.temporal[row].numpy(),
                                  attacked.spatial[row].flatten(1).numpy(), attacked.temporal[row].numpy(), grid)
            for row in range(attacked_pixels.shape[0])]


def attack_rows(loaded, clips: int, epsilons: list[float], batch: int) -> list[dict]:
    windows = [held_out_window(loaded, clip_seed(EVALUATION_SEED + SEED_OFFSET, index))
               for index in tqdm(range(clips), desc="render held-out windows")]
    pixels = torch.stack([torch.as_tensor(window.pixels) for window in windows])  # [K, T, 3, H, W]
    labels = torch.tensor([window.class_id for window in windows])
    scorer = RobustnessScorer(loaded)
    staa, saliency = build_method(loaded, "staa"), build_method(loaded, "saliency")
    with torch.inference_mode():
        clean_logits = torch.cat([loaded.model(pixel_values=pixels[start:start + batch]).logits
                                  for start in range(0, clips, batch)])  # [K, C]
    predicted = clean_logits.argmax(-1)
    p_clean = clean_logits.softmax(-1).gather(1, predicted[:, None]).squeeze(1)
    starts = range(0, clips, batch)
    clean_maps = {method: [method.attribute(pixels[start:start + batch], target=predicted[start:start + batch])
                           for start in starts] for method in (staa, saliency)}
    rows = [{"attack": "none", "epsilon": 0.0, "clips": clips, "accuracy": float((predicted == labels).float().mean()),
             "flip_rate": 0.0, "prediction_robustness": 1.0, "ms_per_window": 0.0,
             **{f"{prefix}_{name}": (0.0 if name == "com_shift" else 1.0) for prefix in ("staa", "saliency")
                for name in DEVIATION}}]
    jobs = [(kind, steps, epsilon) for kind, steps in ATTACKS for epsilon in epsilons]
    for kind, steps, epsilon in tqdm(jobs, desc="attacks"):
        spec = AttackSpec(kind, epsilon, steps or 1, seed=0)
        adversarial_logits, staa_scores, saliency_scores, seconds = [], [], [], 0.0
        for number, start in enumerate(starts):
            chunk, target = pixels[start:start + batch], predicted[start:start + batch]
            started = time.perf_counter()
            attacked = scorer.attacked_input(chunk, target, spec)
            seconds += time.perf_counter() - started
            with torch.inference_mode():
                adversarial_logits.append(loaded.model(pixel_values=attacked).logits)
            staa_scores += deviations(staa, clean_maps[staa][number], attacked, target, loaded.grid)
            saliency_scores += deviations(saliency, clean_maps[saliency][number], attacked, target, loaded.grid)
        logits = torch.cat(adversarial_logits)
        p_adv = logits.softmax(-1).gather(1, predicted[:, None]).squeeze(1)
        row = {"attack": kind if kind != "pgd" else f"pgd-{steps}", "epsilon": float(epsilon), "clips": clips,
               "accuracy": float((logits.argmax(-1) == labels).float().mean()),
               "flip_rate": float((logits.argmax(-1) != predicted).float().mean()),
               "prediction_robustness": float(torch.clamp(p_adv / p_clean, max=1.0).mean()),
               "ms_per_window": seconds * 1e3 / clips}
        for prefix, scores in (("staa", staa_scores), ("saliency", saliency_scores)):
            row |= {f"{prefix}_{name}": float(np.mean([score[name] for score in scores])) for name in DEVIATION}
        rows.append(row)
    return rows


def latency_rows(streams: int, repeats: int, hop: int, seconds: float) -> list[dict]:
    from staa_serve.clients.client import robustness_options
    from staa_serve.models.synthetic.generate import render_clip, sample_clip_spec
    from staa_serve.server.app import BackgroundServer
    from staa_serve.server.config import ServerConfig

    spec = sample_clip_spec(clip_seed(EVALUATION_SEED + SEED_OFFSET, 0), num_frames=int(seconds * 16))
    frames = list(render_clip(spec).frames)
    settings = {"off": robustness_options("off"), "fgsm every 4th": robustness_options("fgsm", 4, every=4)}
    collected = {name: ([], []) for name in settings}
    with BackgroundServer(ServerConfig(port=0)) as server:
        for _ in tqdm(range(repeats), desc="paced streams"):
            for name, options in settings.items():  # alternate, so drift hits both alike
                for run in concurrent_streams(server.target, streams, frames, spec.fps, hop=hop, robustness=options):
                    if run.error:
                        raise RuntimeError(f"stream failed: {run.error}")
                    collected[name][0].extend(run.latencies_ms)
                    collected[name][1].extend(run.robustness)
    rows = []
    for name, (latencies, scores) in collected.items():
        rows.append({"robustness": name, "streams": streams, "windows": len(latencies),
                     **{key: value for key, value in percentiles(latencies, (50, 90, 99)).items()},
                     "max_ms": float(max(latencies)), "robustness_events": len(scores),
                     "robustness_skipped": sum(score.skipped for score in scores)})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for attack in sorted({row["attack"] for row in rows} - {"none"}):
        chosen = [row for row in rows if row["attack"] == attack]
        eps = [row["epsilon"] for row in chosen]
        axes[0].plot(eps, [row["accuracy"] for row in chosen], marker="o", label=attack)
        axes[1].plot(eps, [row["staa_explanation_resilience"] for row in chosen], marker="o", label=f"STAA, {attack}")
        axes[1].plot(eps, [row["saliency_explanation_resilience"] for row in chosen], marker="x", linestyle="--",
                     label=f"Saliency, {attack}")
        axes[2].plot(eps, [row["staa_spatial_top10_iou"] for row in chosen], marker="o", label=f"STAA, {attack}")
        axes[2].plot(eps, [row["saliency_spatial_top10_iou"] for row in chosen], marker="x", linestyle="--",
                     label=f"Saliency, {attack}")
    clean = next(row for row in rows if row["attack"] == "none")
    axes[0].axhline(clean["accuracy"], color="grey", linestyle=":", label="clean")
    for axis, title in zip(axes, ("top-1 accuracy", "explanation resilience", "top-10 % token IoU")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("epsilon (/255)")
        axis.set_title(title)
        axis.set_ylim(0, 1.02)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="staa-bench robustness")
    parser.add_argument("--model", default=None)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--epsilons", default="1,2,4,8", help="comma-separated, /255 units")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--streams", type=int, default=1, help="concurrent paced live streams in part 2")
    parser.add_argument("--repeats", type=int, default=3, help="stream runs per setting in part 2 (alternating)")
    parser.add_argument("--hop", type=int, default=8, help="source frames between windows of the live streams")
    parser.add_argument("--stream-seconds", type=float, default=12.0)
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a few clips, two epsilons, one short stream (CI)")
    parser.add_argument("--out-dir", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.epsilons, args.repeats, args.stream_seconds = 4, "2,8", 1, 4.0
    epsilons = [float(value) for value in args.epsilons.split(",")]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.model)
    sections = []
    if not args.latency_only:
        rows = attack_rows(loaded, args.clips, epsilons, args.batch)
        write_csv(args.out_dir / "robustness.csv", rows, COLUMNS)
        plot(rows, args.out_dir / "robustness.png")
        sections += ["## Accuracy and explanation deviation against epsilon", "",
                     f"{args.clips} held-out windows. Deviation columns compare each method's explanation of the clean "
                     "window with its explanation of the attacked one, for the clean prediction's class "
                     "(resilience 1 = unchanged; IoU, rho, tau: higher = more stable; com_shift: lower = more stable). "
                     "Every method sees the very same perturbed windows.", "",
                     markdown_table(rows, COLUMNS), "", "![accuracy and deviation](robustness.png)", ""]
    latency = latency_rows(args.streams, args.repeats, args.hop, args.stream_seconds)
    write_csv(args.out_dir / "robustness_latency.csv", latency, LATENCY_COLUMNS)
    off, on = latency
    sections += ["## What the robustness lane costs a live stream", "",
                 f"{args.streams} paced live stream(s) of a {args.stream_seconds:g} s SynthKinetics clip at its own fps, "
                 f"a window every {args.hop} frames, {args.repeats} runs per setting alternating; latency = last frame of "
                 "a window sent -> its explanation received (client side, 127.0.0.1).", "",
                 markdown_table(latency, LATENCY_COLUMNS), "",
                 f"p99 heatmap latency with FGSM on every 4th window: {on['p99_ms']:.1f} ms vs {off['p99_ms']:.1f} ms off "
                 f"({100 * (on['p99_ms'] / off['p99_ms'] - 1):+.1f} %).", ""]
    write_markdown(args.out_dir / "robustness.md", "Robustness: attacks, explanation deviation, lane cost", conditions({
        "model": f"{loaded.model_id} ({loaded.weights_sha256[:12]})",
        "attacks": "noise (Gaussian, sigma = eps, clipped), FGSM, PGD-5 (random start, step 2.5*eps/5), untargeted "
                   "against the clean prediction, in [0,1] pixel space before normalisation",
    }), sections)
    print((args.out_dir / "robustness.md").read_text())


if __name__ == "__main__":
    main()
