"""PyAV vs decord for the server's clip path: decode a whole clip, keeping the frames windows sample.

    python -m staa_serve.benchmarks.decode_backends [--pairs 7]

Writes benchmarks/reports/decode_backends.{md,csv}. The faster backend on these clips is
models.video.DEFAULT_BACKEND (both are pixel-identical, tests/models/test_video.py).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from tqdm import tqdm

from staa_serve.benchmarks.report import REPORTS, conditions, interleaved, markdown_table, write_csv, write_markdown
from staa_serve.benchmarks.window_costs import CLIPS, CLIPS_DIR
from staa_serve.models.sampling import WindowSpec, frame_is_needed
from staa_serve.models.video import decode_clip

COLUMNS = ["clip", "source", "pyav_ms", "decord_ms", "decord_over_pyav"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.benchmarks.decode_backends")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    spec = WindowSpec(8, 4)
    rows = []
    for name in tqdm(CLIPS, desc="clips"):
        path = CLIPS_DIR / name
        for source_kind, source in (("file", path), ("bytes", path.read_bytes())):
            def run(backend):
                return lambda: decode_clip(source, backend, needed=lambda index: frame_is_needed(index, spec))

            times_pyav, times_decord, ratio = interleaved(run("pyav"), run("decord"), args.pairs, warmup=1)
            rows.append({"clip": name, "source": source_kind, "pyav_ms": statistics.median(times_pyav) * 1e3,
                         "decord_ms": statistics.median(times_decord) * 1e3, "decord_over_pyav": ratio})
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "decode_backends.csv", rows, COLUMNS)
    write_markdown(args.out / "decode_backends.md", "Decoding backends: PyAV vs decord", conditions({
        "work": f"decode a whole clip, keep the frames windows of T={spec.num_frames}, stride {spec.stride} sample "
                "(as iter_clip_windows does), from a file path and from in-memory bytes",
        "timing": f"interleaved PyAV/decord, {args.pairs} pairs after 1 warm-up pair; ratio = median of per-pair ratios",
    }), [markdown_table(rows, COLUMNS)])
    print((args.out / "decode_backends.md").read_text())


if __name__ == "__main__":
    main()
