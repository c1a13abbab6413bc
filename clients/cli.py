"""``staa-client``: explain a clip through a running server and write explanations.json + overlay.mp4.

    staa-client --server 127.0.0.1:50051 explain CLIP --out DIR [--live]
                [--robustness {off,noise,fgsm,pgd} --epsilon E --every N --steps K]
    staa-client --server 127.0.0.1:50051 info

A failing call exits with status 2 and prints the gRPC status code and message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import grpc

from staa_serve.clients.client import ExplainerClient, robustness_options
from staa_serve.clients.overlay import write_overlay_video
from staa_serve.clients.results import explanation_to_dict, model_to_dict, robustness_to_dict
from staa_serve.models.video import decode_clip
from staa import package_version
from staa.v1 import explainer_pb2 as pb


METHODS = {"staa": pb.METHOD_STAA, "staa_class": pb.METHOD_STAA_CLASS, "saliency": pb.METHOD_SALIENCY,
           "input_x_gradient": pb.METHOD_INPUT_X_GRADIENT, "integrated_gradients_8": pb.METHOD_INTEGRATED_GRADIENTS_8}
THRESHOLD_MODES = {"server": pb.THRESHOLD_MODE_UNSPECIFIED, "mean_std": pb.THRESHOLD_MODE_MEAN_STD,
                   "percentile": pb.THRESHOLD_MODE_PERCENTILE}
AGGREGATIONS = {"server": pb.LAYER_AGGREGATION_UNSPECIFIED, "last": pb.LAYER_AGGREGATION_LAST,
                "mean": pb.LAYER_AGGREGATION_MEAN, "mean_last_k": pb.LAYER_AGGREGATION_MEAN_LAST_K}


def _options(args) -> dict:
    window = pb.WindowSpec(stride=args.stride, hop=args.hop)
    staa = pb.StaaOptions(top_k=args.top_k, method=METHODS[args.method],
                          threshold_mode=THRESHOLD_MODES[args.threshold_mode],
                          spatial_aggregation=AGGREGATIONS[args.aggregation],
                          temporal_aggregation=AGGREGATIONS[args.aggregation])
    if args.smooth:
        staa.smooth = True
    for name in ("kappa", "gamma", "target"):
        if getattr(args, name) is not None:
            setattr(staa, "target_class" if name == "target" else name, getattr(args, name))
    robustness = robustness_options(args.robustness, args.epsilon, args.every, args.steps)
    return {"window": window, "staa": staa, "robustness": robustness, "model": args.model}


def _print_window(window: dict, elapsed_s: float) -> None:
    top = ", ".join(f"{score['label']} {score['prob']:.3f}" for score in window["topk"][:3])
    timings = window["timings_ms"]
    peak = max(range(len(window["temporal"])), key=window["temporal"].__getitem__)
    params = window.get("params", {})
    explained = f"{params.get('method', 'METHOD_STAA').removeprefix('METHOD_').lower()} class {params.get('target_class', 0)}"
    print(f"window {window['index']:3d} frames {window['frames'][0]:5d}-{window['frames'][-1]:<5d}"
          f"{' (padded)' if window['padded'] else ''} | {top} | {explained} | peak frame {window['frames'][peak]} | "
          f"forward {timings['forward_ms']:.1f} ms, staa {timings['attribution_ms']:.1f} ms, "
          f"post {timings['postprocess_ms']:.1f} ms, total {timings['total_ms']:.1f} ms | t={elapsed_s:.1f}s",
          flush=True)


def _print_robustness(scores: dict) -> None:
    if scores["skipped"]:
        print(f"window {scores['window_index']:3d} robustness skipped: {scores['reason']}", flush=True)
        return
    print(f"window {scores['window_index']:3d} robustness {scores['attack']} eps {scores['epsilon']:g}/255 | "
          f"flipped {scores['flipped']} | p {scores['p_clean']:.3f} -> {scores['p_adv']:.3f} | "
          f"resilience {scores['explanation_resilience']:.3f} (IoU {scores['spatial_top10_iou']:.2f}, "
          f"rho {scores['spearman']:.2f}, tau {scores['kendall_tau']:.2f}) | {scores['passes']} passes, "
          f"{scores['ms']:.0f} ms", flush=True)


def run_explain(client: ExplainerClient, clip: Path, out: Path, live: bool = False, speed: float = 1.0,
                frame_format: str = "rgb24", overlay: bool = True, **options) -> dict:
    """Explain ``clip``, print each window, write ``out/explanations.json`` (and overlay.mp4); return the JSON."""
    started = time.perf_counter()
    windows, robustness = [], {}
    if live:  # live streaming needs the pixels first; ExplainClip sends the bytes as they are
        decoded = decode_clip(clip)
        events = client.explain_frames(list(decoded.frames), decoded.fps, kind=frame_format, speed=speed, **options)
    else:
        events = client.explain_clip_events(clip, **options)
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "explanation":
            windows.append(explanation_to_dict(event.explanation))
            _print_window(windows[-1], time.perf_counter() - started)
        elif kind == "robustness":
            scores = robustness_to_dict(event.robustness)
            robustness[scores["window_index"]] = scores
            _print_robustness(scores)
    for window in windows:  # late scores join the window they belong to
        if window["index"] in robustness:
            window["robustness"] = robustness[window["index"]]
    result = {"model": model_to_dict(client.model_info(options.get("model", ""))), "clip": str(clip),
              "rpc": "StreamExplain" if live else "ExplainClip", "windows": windows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "explanations.json").write_text(json.dumps(result) + "\n")
    if overlay:
        shown = {index for window in windows for index in window["frames"]}
        decoded = decode_clip(clip, needed=shown.__contains__)  # only the frames the windows cover
        write_overlay_video(out / "overlay.mp4", dict(zip(decoded.indices.tolist(), decoded.frames)), windows)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="staa-client", description="Explain video with a STAA Serve server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=None, help="per-call deadline, seconds")
    parser.add_argument("--tls-ca", type=Path, default=None, help="PEM file to verify a TLS server against")
    parser.add_argument("--token-file", type=Path, default=None, help="file holding the server's bearer token")
    parser.add_argument("--model", default="", help="a served model's name or id (default: the server's default "
                                                    "model; `info` lists them under served_models)")
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="explain a clip file")
    explain.add_argument("clip", type=Path)
    explain.add_argument("--out", type=Path, required=True, help="directory for explanations.json and overlay.mp4")
    explain.add_argument("--live", action="store_true", help="stream frames at the clip's fps (StreamExplain)")
    explain.add_argument("--speed", type=float, default=1.0, help="live pacing multiplier (0 = as fast as possible)")
    explain.add_argument("--jpeg", action="store_true", help="live frames as JPEG instead of raw RGB24")
    explain.add_argument("--stride", type=int, default=0, help="source frames between sampled frames (0 = model default)")
    explain.add_argument("--hop", type=int, default=0, help="source frames between windows (0 = one span)")
    explain.add_argument("--top-k", type=int, default=0)
    explain.add_argument("--smooth", action="store_true", help="3x3 smoothing of the heatmaps")
    explain.add_argument("--method", choices=sorted(METHODS), default="staa",
                         help="staa: where the model attends; staa_class: the attention that moved the class's logit; "
                              "gradient methods run on the server's lower-priority lane")
    explain.add_argument("--target", type=int, default=None, help="staa_class: the class to explain (default: the prediction)")
    explain.add_argument("--kappa", type=float, default=None, help="threshold = mean + kappa * std (-10 with --gamma 1: the raw map)")
    explain.add_argument("--gamma", type=float, default=None, help="focusing power, >= 1")
    explain.add_argument("--threshold-mode", choices=sorted(THRESHOLD_MODES), default="server")
    explain.add_argument("--aggregation", choices=sorted(AGGREGATIONS), default="server",
                         help="layers STAA sums, for both maps")
    explain.add_argument("--no-overlay", action="store_true")
    explain.add_argument("--robustness", choices=["off", "noise", "fgsm", "pgd"], default="off",
                         help="attack-robustness scores on every n-th window (a lower-priority server lane)")
    explain.add_argument("--epsilon", type=float, default=None, help="L-inf budget in /255 units (server default 4)")
    explain.add_argument("--every", type=int, default=0, help="score every n-th window (0 = server default, 4)")
    explain.add_argument("--steps", type=int, default=0, help="PGD steps (0 = 5)")
    commands.add_parser("info", help="print the served model's description")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with ExplainerClient(args.server, timeout=args.timeout,
                             root_certificates=args.tls_ca.read_bytes() if args.tls_ca else None,
                             token=args.token_file.read_text().strip() if args.token_file else None) as client:
            if args.command == "info":
                print(json.dumps(model_to_dict(client.model_info(args.model)), indent=2))
                return 0
            result = run_explain(client, args.clip, args.out, live=args.live, speed=args.speed,
                                 frame_format="jpeg" if args.jpeg else "rgb24", overlay=not args.no_overlay,
                                 **_options(args))
            print(f"{len(result['windows'])} windows written to {args.out / 'explanations.json'}"
                  + ("" if args.no_overlay else f" and {args.out / 'overlay.mp4'}"))
            return 0
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
