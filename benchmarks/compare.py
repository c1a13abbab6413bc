"""STAA against gradient-based XAI on the same model and the same held-out clips: cost and quality.

    staa-bench compare [--model ID_OR_DIR] [--clips 24] [--quick] [--out-dir benchmarks/reports]

For every method in ``models.xai.METHOD_NAMES`` and every held-out SynthKinetics clip (rendered,
H.264-encoded, decoded and windowed as the server does): deletion / insertion AUC of p(y-hat) over
tubelets (blurred replacement) beside a random order, frame-deletion AUC, spatial and temporal
pointing game and relevance mass against the ground truth, rank agreement with STAA, and the
model-randomisation check; then cost per explanation (passes, median wall ms, ratio to one plain
forward measured interleaved, peak RSS growth). Also a sweep of STAA's thresholding + focusing
(kappa, gamma) on the same clips, since those are served defaults.

Writes compare.md, compare.csv, compare_focus.csv, compare_cost.png and compare_curves.png.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from staa_serve.benchmarks.report import REPORTS, conditions, interleaved, markdown_table, write_csv, write_markdown
from staa_serve.kernels.threshold_focus import threshold_focus
from staa_serve.models.localisation import score_window
from staa_serve.models.registry import load_model
from staa_serve.models.staa import StaaParams
from staa_serve.models.synthetic.__main__ import clip_seed
from staa_serve.models.synthetic.evaluate import EVALUATION_SEED, HeldOutWindow, held_out_window
from staa_serve.models.xai import METHOD_NAMES, build_methods, joint_map, supported_methods
from staa_serve.models.xai.metrics import (blurred_copy, cascading_randomisations, frame_deletion, random_scores, rank_agreement, tubelet_faithfulness,
                                           with_random_weights)

COLUMNS = ["method", "passes", "ms_median", "ratio_to_forward", "timing_pairs", "peak_mb", "deletion_auc", "insertion_auc",
           "frame_deletion_auc", "pointing_spatial", "pointing_temporal", "mass_spatial", "mass_temporal",
           "agreement_with_staa", "randomisation_agreement"]
QUALITY = ["deletion_auc", "insertion_auc", "frame_deletion_auc", "pointing_spatial", "pointing_temporal",
           "mass_spatial", "mass_temporal", "agreement_with_staa", "randomisation_agreement"]
FOCUS_GRID = [(kappa, gamma) for kappa in (0.0, 0.5, 1.0, 2.0) for gamma in (1.0, 2.0, 3.0)]


def quality_of(method, case: HeldOutWindow, predict, blurred: torch.Tensor, staa_joint: np.ndarray | None) -> dict:
    """One method on one clip: faithfulness, localisation, agreement with STAA."""
    attribution = method.attribute(case.pixels)
    target = int(attribution.logits.argmax(-1))
    joint = joint_map(attribution)[0].numpy()  # [T, h, w]
    faith = tubelet_faithfulness(predict, case.pixels, joint, target, blurred)
    frame_auc, frame_curve = frame_deletion(predict, case.pixels, attribution.temporal[0].numpy(), target, blurred,
                                            joint.shape[1:])
    local = score_window(attribution.spatial[0].numpy(), attribution.temporal[0].numpy(), case.token_masks, case.in_action)
    spatial_ok = method.spatial
    return {
        "deletion_auc": faith.deletion_auc if spatial_ok else None,
        "insertion_auc": faith.insertion_auc if spatial_ok else None,
        "frame_deletion_auc": frame_auc,
        "pointing_spatial": local.pointing_spatial if spatial_ok else None,
        "mass_spatial": local.mass_spatial if spatial_ok else None,
        "pointing_temporal": local.pointing_temporal,
        "mass_temporal": local.mass_temporal,
        "agreement_with_staa": rank_agreement(joint, staa_joint) if staa_joint is not None else None,
        "deletion_curve": faith.deletion_curve, "insertion_curve": faith.insertion_curve, "joint": joint,
        "correct": target == case.class_id,
    }


def floors_of(case: HeldOutWindow, predict, blurred: torch.Tensor, grid, seed: int) -> dict:
    """The same scores for a random ordering / uniformly random map."""
    scores = random_scores(case.token_masks.shape, seed)
    target = int(predict(case.pixels[None]).argmax(-1))
    faith = tubelet_faithfulness(predict, case.pixels, scores, target, blurred)
    frame_auc, _ = frame_deletion(predict, case.pixels, random_scores(case.in_action.shape, seed + 1), target, blurred, grid)
    local = score_window(scores / scores.sum(axis=(1, 2), keepdims=True), np.full(len(case.in_action), 1 / len(case.in_action)),
                         case.token_masks, case.in_action)
    return {"deletion_auc": faith.deletion_auc, "insertion_auc": faith.insertion_auc, "frame_deletion_auc": frame_auc,
            "pointing_spatial": local.floor_pointing_spatial, "mass_spatial": local.floor_mass_spatial,
            "pointing_temporal": local.floor_temporal, "mass_temporal": local.floor_temporal,
            "deletion_curve": faith.deletion_curve, "insertion_curve": faith.insertion_curve}


def _release_freed_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # so the RSS baseline is not inflated by earlier frees
    except OSError:
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def peak_rss_growth_mb(run) -> float:
    """Peak resident-set growth while ``run()`` executes, sampled every millisecond (CPU has no
    allocator counter like CUDA's max_memory_allocated)."""
    _release_freed_memory()
    baseline, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(0, max(peak[0], _rss_bytes()) - baseline) / 2**20


def cost_of(method, pixels: torch.Tensor, predict, seconds: float) -> dict:
    """Median wall ms of one explanation and its ratio to one plain forward, interleaved.

    Pairs fill about ``seconds`` (at least 3, at most 1000): a cheap method's few-percent overhead
    needs hundreds of pairs to stand out of scheduling noise, while IG-50 is clear in three. The
    ratio comes with a 95 % bootstrap interval over the pairs.
    """
    method.attribute(pixels)  # one-time costs (a kernel's compile, lazy init) must not set the pair count
    started = time.perf_counter()
    method.attribute(pixels)
    predict(pixels[None])
    pairs = max(3, min(1000, int(seconds / (time.perf_counter() - started))))
    forward_times, method_times, ratio = interleaved(lambda: predict(pixels[None]), lambda: method.attribute(pixels),
                                                     pairs=pairs, warmup=3 if pairs > 10 else 1)
    low, high = median_interval(np.array(method_times) / np.array(forward_times))
    return {"ms_median": statistics.median(method_times) * 1e3, "forward_ms": statistics.median(forward_times) * 1e3,
            "ratio_to_forward": ratio, "ratio_low": low, "ratio_high": high, "timing_pairs": pairs,
            "peak_mb": peak_rss_growth_mb(lambda: method.attribute(pixels))}


def median_interval(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the median of ``values``."""
    picks = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    low, high = np.percentile(np.median(values[picks], axis=1), [2.5, 97.5])
    return float(low), float(high)


def focus_sweep(loaded, cases: list[HeldOutWindow], predict, blurreds: list[torch.Tensor], params: StaaParams) -> list[dict]:
    """Served STAA maps after thresholding + focusing at each (kappa, gamma): localisation and deletion."""
    from staa_serve.models.pipeline import Staa

    staa = Staa(loaded, params)
    raw = [staa.attribute(case.pixels) for case in cases]
    rows = []
    for kappa, gamma in [(None, None), *FOCUS_GRID]:
        scores = []
        for case, attribution, blurred in zip(cases, raw, blurreds):
            spatial = attribution.spatial[0]  # [T, h, w]
            frames, height, width = spatial.shape
            if kappa is not None:
                focused = threshold_focus(spatial.reshape(1, frames, -1), (height, width), kappa=kappa, gamma=gamma)
                grid = focused.quantized[0].double() + 1e-6 * spatial.reshape(frames, -1)  # ties broken by the raw map
                spatial = (grid / grid.sum(dim=-1, keepdim=True)).reshape(frames, height, width).float()
            temporal = attribution.temporal[0]
            local = score_window(spatial.numpy(), temporal.numpy(), case.token_masks, case.in_action)
            target = int(attribution.logits.argmax(-1))
            joint = (temporal[:, None, None] * spatial).numpy()
            scores.append({"pointing_spatial": local.pointing_spatial, "mass_spatial": local.mass_spatial,
                           "deletion_auc": tubelet_faithfulness(predict, case.pixels, joint, target, blurred).deletion_auc})
        row = {"kappa": "raw" if kappa is None else kappa, "gamma": "raw" if gamma is None else gamma}
        row.update({key: _mean([score[key] for score in scores]) for key in ("pointing_spatial", "mass_spatial", "deletion_auc")})
        rows.append(row)
    return rows


def cascading_sanity(loaded, names: tuple[str, ...], cases: list[HeldOutWindow], predict) -> list[dict]:
    """Per method and cascading-randomisation stage (``cascading_randomisations``): the median over
    ``cases`` of the Spearman rho between the trained model's maps and the randomised model's, for the
    same class (the trained model's prediction). Near 1: the map ignores what was randomised."""
    targets = [int(predict(case.pixels[None]).argmax(-1)) for case in cases]
    reference = {method.name: [method.attribute(case.pixels, target=target) for case, target in zip(cases, targets)]
                 for method in build_methods(loaded, names)}
    rows = []
    stages = cascading_randomisations(loaded)
    for stage, randomised in tqdm(stages, desc="cascading randomisation"):
        for method in build_methods(randomised, names):
            spatial, temporal = [], []
            for case, target, trained in zip(cases, targets, reference[method.name]):
                attribution = method.attribute(case.pixels, target=target)
                if method.spatial:
                    spatial.append(rank_agreement(trained.spatial[0].numpy(), attribution.spatial[0].numpy()))
                temporal.append(rank_agreement(trained.temporal[0].numpy(), attribution.temporal[0].numpy()))
            rows.append({"method": method.name, "stage": stage, "rho_spatial": _median(spatial),
                         "rho_temporal": _median(temporal)})
    return rows


def _median(values) -> float | None:
    values = [value for value in values if value == value]
    return float(np.median(values)) if values else None


def _mean(values) -> float | None:
    values = [value for value in values if value is not None and value == value]
    return float(np.mean(values)) if values else None


def run(model: str | None, clips: int, quick: bool, out_dir: Path, methods: tuple[str, ...], seed: int = EVALUATION_SEED) -> dict:
    torch.manual_seed(0)
    loaded = load_model(model)
    predict = torch.inference_mode()(loaded.adapter.forward)
    methods = supported_methods(loaded, methods)
    chosen = build_methods(loaded, methods)
    randomised = {method.name: method for method in build_methods(with_random_weights(loaded), methods)}
    cases = [held_out_window(loaded, clip_seed(seed, index)) for index in tqdm(range(clips), desc="held-out clips")]
    # Cost first, in the state of a server that only explains, not after the quality pass has put
    # IG-50's batches of 50 forwards and every other method's allocations through this process.
    timing_seconds = 0.5 if quick else 10.0
    costs = {method.name: cost_of(method, cases[0].pixels, predict, timing_seconds) for method in tqdm(chosen, desc="cost")}
    blurreds = [blurred_copy(case.pixels, sigma=float(loaded.patch_size)) for case in cases]
    sanity_clips = min(len(cases), 2 if quick else 6)
    per_method: dict[str, list[dict]] = {method.name: [] for method in chosen}
    sanity: dict[str, list[float]] = {method.name: [] for method in chosen}
    floors = []
    total = len(cases) * len(chosen)
    with tqdm(total=total, desc="quality") as progress:
        for index, (case, blurred) in enumerate(zip(cases, blurreds)):
            staa_joint = None
            for method in chosen:
                result = quality_of(method, case, predict, blurred, staa_joint)
                if method.name == "staa":
                    staa_joint = result["joint"]
                    result["agreement_with_staa"] = 1.0
                per_method[method.name].append(result)
                if index < sanity_clips:
                    random_joint = joint_map(randomised[method.name].attribute(case.pixels))[0].numpy()
                    sanity[method.name].append(rank_agreement(result["joint"], random_joint))
                progress.update(1)
            floors.append(floors_of(case, predict, blurred, loaded.grid, seed=index))
    rows = []
    for method in chosen:
        results = per_method[method.name]
        row = {"method": method.name, "passes": method.passes, **costs[method.name]}
        row.update({key: _mean([result[key] for result in results]) for key in QUALITY if key != "randomisation_agreement"})
        row["randomisation_agreement"] = _mean(sanity[method.name])
        row["accuracy"] = _mean([float(result["correct"]) for result in results])
        rows.append(row)
    floor_row = {"method": "random (floor)", "passes": 0}
    floor_row.update({key: _mean([floor[key] for floor in floors]) for key in QUALITY if key in floors[0]})
    focus = focus_sweep(loaded, cases, predict, blurreds, StaaParams())
    sanity_rows = cascading_sanity(loaded, methods, cases[:sanity_clips], predict)
    curves = {method.name: (np.mean([r["deletion_curve"] for r in per_method[method.name]], axis=0),
                            np.mean([r["insertion_curve"] for r in per_method[method.name]], axis=0))
              for method in chosen if method.spatial}
    curves["random (floor)"] = (np.mean([f["deletion_curve"] for f in floors], axis=0), np.mean([f["insertion_curve"] for f in floors], axis=0))
    write_reports(out_dir, loaded, rows, floor_row, focus, curves, clips, quick, sanity_rows, sanity_clips)
    return {"rows": rows, "floor": floor_row, "focus": focus, "sanity": sanity_rows}


STAA_VARIANTS = {"staa": "mean over layers, CLS-weighted tau", "staa_last_layer": "last layer",
                 "staa_last_2": "mean of the last 2 layers", "staa_uniform_temporal": "mean over layers, uniform tau weights"}
LOCALISATION = ("pointing_spatial", "mass_spatial", "pointing_temporal", "mass_temporal")


def localisation_score(row: dict) -> float:
    """The mean of the four ground-truth scores: how STAA variants are ranked."""
    return float(np.mean([row[key] for key in LOCALISATION]))


def choose_focus(focus: list[dict]) -> dict:
    """The (kappa, gamma) with the most relevance mass among those whose pointing game is not below the
    raw map's and whose deletion AUC is not worse by more than 0.01; the raw map when none qualifies."""
    raw = focus[0]
    allowed = [row for row in focus[1:] if row["pointing_spatial"] >= raw["pointing_spatial"] - 1e-9
               and row["deletion_auc"] <= raw["deletion_auc"] + 0.01]
    return max(allowed, key=lambda row: row["mass_spatial"]) if allowed else raw


def evidence_for_defaults(rows: list[dict], focus: list[dict]) -> list[str]:
    """What the harness says the defaults should be, next to the defaults in force (StaaParams())."""
    lines = []
    variants = [row for row in rows if row["method"] in STAA_VARIANTS and row.get("pointing_spatial") is not None]
    if variants:
        ranked = sorted(variants, key=localisation_score, reverse=True)
        lines.append("STAA variants by mean localisation score (spatial + temporal pointing and mass): " + ", ".join(
            f"{row['method']} ({STAA_VARIANTS[row['method']]}) {localisation_score(row):.3f}" for row in ranked) + ".")
    if focus:
        chosen, raw = choose_focus(focus), focus[0]
        lines.append(f"Thresholding + focusing: raw map mass {raw['mass_spatial']:.3f}, pointing {raw['pointing_spatial']:.3f}, "
                     f"deletion {raw['deletion_auc']:.3f}; best allowed kappa={chosen['kappa']}, gamma={chosen['gamma']}: "
                     f"mass {chosen['mass_spatial']:.3f}, pointing {chosen['pointing_spatial']:.3f}, deletion {chosen['deletion_auc']:.3f}.")
    defaults = StaaParams()
    lines.append(f"In force (`StaaParams()`): spatial {defaults.spatial_aggregation}, temporal {defaults.temporal_aggregation}, "
                 f"tau weights {defaults.temporal_weighting}, kappa {defaults.kappa}, gamma {defaults.gamma}.")
    return ["- " + line for line in lines]


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


SANITY_COLUMNS = ["method", "stage", "rho_spatial", "rho_temporal"]


def sanity_table(sanity: list[dict]) -> tuple[list[dict], list[str]]:
    """Methods as rows, stages as columns: "spatial rho / temporal rho"."""
    stages = list(dict.fromkeys(row["stage"] for row in sanity))
    table = {}
    for row in sanity:
        table.setdefault(row["method"], {"method": row["method"]})[row["stage"]] = (
            f"{_fmt(row['rho_spatial'])} / {_fmt(row['rho_temporal'])}")
    return list(table.values()), ["method", *stages]


def write_reports(out_dir: Path, loaded, rows: list[dict], floor: dict, focus: list[dict], curves: dict, clips: int,
                  quick: bool, sanity: list[dict] = (), sanity_clips: int = 0) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    table_rows = [{column: _fmt(row.get(column)) for column in COLUMNS} for row in rows + [floor]]
    write_csv(out_dir / "compare.csv", rows + [floor], COLUMNS)
    focus_columns = ["kappa", "gamma", "pointing_spatial", "mass_spatial", "deletion_auc"]
    write_csv(out_dir / "compare_focus.csv", focus, focus_columns)
    write_csv(out_dir / "compare_sanity.csv", list(sanity), SANITY_COLUMNS)
    sanity_rows, sanity_columns = sanity_table(list(sanity))
    floor_tau = floor.get("mass_temporal")
    if floor_tau is not None:
        summary_tau = "- Frame-importance mass inside the action above the random floor (" + f"{floor_tau:.3f}): " + ", ".join(
            f"{row['method']} {row['mass_temporal'] - floor_tau:+.3f}" for row in rows if row.get("mass_temporal") is not None) + "."
    else:
        summary_tau = ""
    by_name = {row["method"]: row for row in rows}
    summary = []
    if "staa" in by_name:
        staa = by_name["staa"]
        for other in ("integrated_gradients_50", "saliency"):
            if other in by_name:
                summary.append(f"- STAA's time is {100 * staa['ms_median'] / by_name[other]['ms_median']:.2f} % of "
                               f"{other}'s ({staa['ms_median']:.2f} ms vs {by_name[other]['ms_median']:.1f} ms per explanation).")
        summary.append(f"- STAA's overhead over the plain forward: {100 * (staa['ratio_to_forward'] - 1):+.1f} % "
                       f"(median of {staa['timing_pairs']} per-pair ratios {staa['ratio_to_forward']:.3f}, 95 % "
                       f"interval {100 * (staa['ratio_low'] - 1):+.1f} to {100 * (staa['ratio_high'] - 1):+.1f} %; "
                       "pairs interleaved, alternating which runs first; measured before the quality pass).")
    sections = [
        "## Summary", "", *summary, summary_tau, "",
        "## Defaults from evidence", "", *evidence_for_defaults(rows, focus), "",
        f"## Methods ({clips} held-out clips{', --quick' if quick else ''})", "",
        "Deletion AUC: lower is better; all other quality columns: higher is better, except "
        "randomisation_agreement (rank correlation of the map with the map of the same model with random weights: "
        "lower means the method depends on what the model learned). n/a: the method has no spatial map.", "",
        markdown_table(table_rows, COLUMNS), "",
        f"## Sanity: cascading model randomisation ({sanity_clips} held-out clips)", "",
        "Adebayo et al. 2018: re-initialise the classifier and final LayerNorm, then each block from the top down, "
        "then the embeddings, keeping each stage's randomisation; explain the trained model's predicted class with "
        "the randomised model. Each cell: median Spearman rho of the spatial maps / of the frame importance against "
        "the trained model's (1: unchanged; an explanation of the decision should fall towards 0 from the first "
        "stage). n/a: no spatial map, or constant maps.", "",
        markdown_table(sanity_rows, sanity_columns), "",
        "![sanity](compare_sanity.png)", "",
        "## Thresholding + focusing (served STAA maps)", "",
        "The raw STAA map against the served map after dynamic thresholding (mean + kappa * std) and focusing "
        "(power gamma), on the same clips:", "",
        markdown_table([{column: _fmt(row[column]) for column in focus_columns} for row in focus], focus_columns), "",
        "![cost](compare_cost.png)", "", "![curves](compare_curves.png)",
    ]
    write_markdown(out_dir / "compare.md", "STAA vs gradient-based XAI: cost and quality",
                   conditions({"model": f"{loaded.model_id} ({loaded.weights_sha256[:12]})", "clips": str(clips)}), sections)
    _plots(out_dir, rows, curves, list(sanity))


def _plots(out_dir: Path, rows: list[dict], curves: dict, sanity: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    stages = list(dict.fromkeys(row["stage"] for row in sanity))
    for method in dict.fromkeys(row["method"] for row in sanity):
        values = [next((row["rho_spatial"] for row in sanity if row["method"] == method and row["stage"] == stage), None)
                  for stage in stages]
        if any(value is not None for value in values):
            axis.plot(stages, [np.nan if value is None else value for value in values], marker="o", label=method,
                      linewidth=2.5 if method.startswith("staa") and method in ("staa", "staa_class") else 1.0)
    axis.set_ylabel("spatial Spearman rho vs trained")
    axis.set_title("cascading model randomisation (lower after randomising = depends on the model)")
    axis.tick_params(axis="x", rotation=30)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(out_dir / "compare_sanity.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 4.5))
    ordered = sorted(rows, key=lambda row: row["ms_median"])
    axis.barh([row["method"] for row in ordered], [row["ms_median"] for row in ordered], color="#4477aa")
    axis.set_xscale("log")
    axis.set_xlabel("ms per explanation (median, log scale)")
    figure.tight_layout()
    figure.savefig(out_dir / "compare_cost.png", dpi=110)
    plt.close(figure)
    figure, (deletion, insertion) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for name, (deleted, inserted) in curves.items():
        style = {"linestyle": "--", "color": "black"} if name.startswith("random") else {}
        xs = np.linspace(0, 1, len(deleted))
        deletion.plot(xs, deleted, label=name, **style)
        insertion.plot(xs, inserted, label=name, **style)
    deletion.set_title("deletion (lower is better)")
    insertion.set_title("insertion (higher is better)")
    for axis in (deletion, insertion):
        axis.set_xlabel("fraction of tubelets")
    deletion.set_ylabel("p(predicted class)")
    insertion.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out_dir / "compare_curves.png", dpi=110)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="staa-bench compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model id or directory (default: the shipped model)")
    parser.add_argument("--clips", type=int, default=None, help="held-out clips (default 24, --quick 3)")
    parser.add_argument("--quick", action="store_true", help="a few clips and fewer timing pairs, for CI")
    parser.add_argument("--out-dir", type=Path, default=REPORTS)
    parser.add_argument("--methods", default=",".join(METHOD_NAMES), help="comma-separated subset of the methods")
    args = parser.parse_args(argv)
    clips = args.clips or (3 if args.quick else 24)
    methods = tuple(name for name in args.methods.split(",") if name)
    if "staa" not in methods:
        methods = ("staa", *methods)  # agreement is measured against STAA
    result = run(args.model, clips, args.quick, args.out_dir, methods)
    print(markdown_table([{column: _fmt(row.get(column)) for column in COLUMNS} for row in result["rows"] + [result["floor"]]],
                         COLUMNS))
    print(f"wrote {args.out_dir / 'compare.md'}")


if __name__ == "__main__":
    main()
