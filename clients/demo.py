"""``make demo``: start the server on the default model, stream a clip through both RPCs, write explanations.

Runs the real ``staa-serve`` process on a free 127.0.0.1 port, waits for health SERVING, explains
the clip with ExplainClip and again live with StreamExplain, prints a summary, then SIGTERMs the server.
Without ``--clip`` it first generates a SynthKinetics clip (held-out seed) and, since that clip's
ground truth is known, prints where and when the action really was beside what STAA found.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from staa_serve.clients.cli import run_explain
from staa_serve.clients.client import ExplainerClient


def start_server(model: str | None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "staa_serve.server.app", "--host", "127.0.0.1", "--port", "0"]
    if model:
        command += ["--model", model]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:  # the first line names the bound port
        print(f"[server] {line.rstrip()}", flush=True)
        if "listening on" in line:
            # Keep relaying so the server never blocks on a full pipe.
            threading.Thread(target=_relay, args=(process.stdout,), daemon=True).start()
            return process, line.split("listening on ")[1].split()[0]
    raise RuntimeError(f"staa-serve exited with status {process.wait()} before listening")


def _relay(stream) -> None:
    for line in stream:
        print(f"[server] {line.rstrip()}", flush=True)


def summarise(result: dict, label: str) -> None:
    windows = result["windows"]
    forward = sorted(window["timings_ms"]["forward_ms"] for window in windows)
    staa = sorted(window["timings_ms"]["attribution_ms"] + window["timings_ms"]["postprocess_ms"] for window in windows)
    print(f"{label}: {len(windows)} windows, each {len(windows[0]['temporal'])} frames x "
          f"{len(windows[0]['spatial'][0])}x{len(windows[0]['spatial'][0][0])} heatmap; "
          f"median forward {forward[len(forward) // 2]:.1f} ms, STAA+postprocess {staa[len(staa) // 2]:.1f} ms")


def synthetic_clip(out: Path, seed: int) -> Path:
    from staa_serve.models.synthetic.__main__ import write_clip

    out.mkdir(parents=True, exist_ok=True)
    truth = write_clip(out, "synthetic", seed, difficulty=0.5)
    print(f"generated {out / 'synthetic.mp4'}: {truth['label']}, action frames "
          f"{truth['action_frames'][0]}-{truth['action_frames'][1]} of {truth['num_frames']}")
    return out / "synthetic.mp4"


def compare_with_truth(result: dict, truth_path: Path) -> None:
    """Where the ground truth is known, say whether STAA's peak frame lies inside the action."""
    truth = json.loads(truth_path.read_text())
    first, last = truth["action_frames"]
    for window in result["windows"]:
        peak = window["frames"][max(range(len(window["temporal"])), key=window["temporal"].__getitem__)]
        verdict = "inside" if first <= peak <= last else "outside"
        print(f"window {window['index']}: predicted {window['topk'][0]['label']} ({window['topk'][0]['prob']:.2f}), "
              f"truth {truth['label']}; frame-importance peak at frame {peak}, {verdict} the action ({first}-{last})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="staa-demo")
    parser.add_argument("--clip", type=Path, default=None, help="a video file (default: generate a SynthKinetics clip)")
    parser.add_argument("--seed", type=int, default=30_007, help="seed of the generated clip (held out from training)")
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    if args.clip is None:
        args.clip = synthetic_clip(args.out / "input", args.seed)
    process, target = start_server(args.model)
    try:
        with ExplainerClient(target) as client:
            client.wait_ready(timeout=300)
            info = client.model_info()
            print(f"model {info.model_id} ({info.architecture}), random weights: {info.random_weights}")
            clip_result = run_explain(client, args.clip, args.out / "clip")
            summarise(clip_result, "ExplainClip")
            truth = args.clip.with_suffix(".json")
            if truth.is_file():
                compare_with_truth(clip_result, truth)
            live_result = run_explain(client, args.clip, args.out / "live", live=True, speed=0)
            summarise(live_result, "StreamExplain")
        for kind in ("clip", "live"):
            print(f"wrote {args.out / kind / 'explanations.json'} and {args.out / kind / 'overlay.mp4'}")
        return 0
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    sys.exit(main())
