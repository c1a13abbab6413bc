"""`staa-bench compare --quick` end to end on a tiny random model: every report file, one row per method."""

import csv
import subprocess
import sys

from benchmarks.compare import COLUMNS


def test_quick_compare_writes_the_report(tiny_model_dir, tmp_path):
    methods = "staa,staa_original,saliency,grad_cam,frame_ablation"
    done = subprocess.run([sys.executable, "-m", "benchmarks.cli", "compare", "--quick", "--clips", "2", "--model",
                           str(tiny_model_dir), "--methods", methods, "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("compare.md", "compare.csv", "compare_focus.csv", "compare_cost.png", "compare_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    with (tmp_path / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    assert [row["method"] for row in rows] == methods.split(",") + ["random (floor)"]
    staa = rows[0]
    assert int(staa["passes"]) == 1 and float(staa["ms_median"]) > 0 and float(staa["agreement_with_staa"]) == 1.0
    assert rows[-2]["pointing_spatial"] == ""  # frame ablation has no spatial map
    report = (tmp_path / "compare.md").read_text()
    assert "STAA's time is" in report and "Thresholding + focusing" in report


def test_unknown_subcommand_exits_with_usage():
    done = subprocess.run([sys.executable, "-m", "benchmarks.cli", "nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: staa-bench" in done.stderr
