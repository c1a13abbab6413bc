"""``python -m staa_serve.models.synthetic generate --seed S --count N --out DIR``: write clips with ground truth.

For each clip: ``NAME.mp4`` (H.264), ``NAME.json`` (label, class_id, fps, num_frames,
action_frames [first, last], ...) and ``NAME_masks.npz`` (``masks``: bool [num_frames, H, W],
the pixels of the body parts performing the action; empty outside the action interval).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from staa_serve.models.synthetic.generate import DEFAULT_FRAMES, DEFAULT_SIZE, render_clip, sample_clip_spec


def clip_seed(seed: int, index: int) -> int:
    """A distinct, reproducible seed per clip (seed sets never overlap across --seed values)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_mp4(path: Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if stream.codec_context.name == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_clip(out: Path, name: str, seed: int, **options) -> dict:
    clip = render_clip(sample_clip_spec(seed, **options))
    write_mp4(out / f"{name}.mp4", clip.frames, clip.spec.fps)
    metadata = clip.metadata()
    (out / f"{name}.json").write_text(json.dumps(metadata) + "\n")
    np.savez_compressed(out / f"{name}_masks.npz", masks=clip.masks)
    return metadata


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.models.synthetic")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write clips with ground truth")
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument("--count", type=int, required=True)
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--difficulty", type=float, default=None, help="0 clean .. 1 cluttered (default: random per clip)")
    generate.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    generate.add_argument("--size", type=int, default=DEFAULT_SIZE)
    generate.add_argument("--class-id", type=int, default=None, help="only this action (default: random per clip)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for index in tqdm(range(args.count), desc="clips"):
        write_clip(args.out, f"clip_s{args.seed}_{index:05d}", clip_seed(args.seed, index), difficulty=args.difficulty,
                   class_id=args.class_id, num_frames=args.frames, size=args.size)


if __name__ == "__main__":
    main()
