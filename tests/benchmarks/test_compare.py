"""`staa-bench compare --quick` end to end on a tiny random model: every report file, one row per method."""

import csv
import subprocess
import sys

from staa_serve.benchmarks.compare import COLUMNS


def test_quick_compare_writes_the_report(tiny_model_dir, tmp_path):
    methods = "staa,staa_original,saliency,grad_cam,frame_ablation"
    done = subprocess.run([sys.executable, "-m", "staa_serve.benchmarks.cli", "compare", "--quick", "--clips", "2", "--model",
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
    assert "95 % interval" in report


def test_unknown_subcommand_exits_with_usage():
    done = subprocess.run([sys.executable, "-m", "staa_serve.benchmarks.cli", "nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: staa-bench" in done.stderr


def test_quick_compare_runs_videomae_and_skips_timesformer_only_methods(tmp_path):
    from staa_serve.models.random_weights import random_config, save_random_model

    model_dir = save_random_model(tmp_path / "videomae", random_config("videomae", image_size=32, num_labels=5), seed=2)
    done = subprocess.run([sys.executable, "-m", "staa_serve.benchmarks.cli", "compare", "--quick", "--clips", "1", "--model",
                           str(model_dir), "--methods", "staa,attention_rollout,saliency", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with (tmp_path / "out" / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows] == ["staa", "saliency", "random (floor)"]
    assert float(rows[0]["ratio_to_forward"]) > 0


def test_focus_choice_keeps_pointing_and_deletion_and_maximises_mass():
    from staa_serve.benchmarks.compare import choose_focus

    raw = {"kappa": "raw", "gamma": "raw", "pointing_spatial": 0.6, "mass_spatial": 0.3, "deletion_auc": 0.20}
    worse_pointing = {"kappa": 2.0, "gamma": 3.0, "pointing_spatial": 0.5, "mass_spatial": 0.9, "deletion_auc": 0.18}
    worse_deletion = {"kappa": 1.0, "gamma": 3.0, "pointing_spatial": 0.6, "mass_spatial": 0.8, "deletion_auc": 0.25}
    good = {"kappa": 0.5, "gamma": 2.0, "pointing_spatial": 0.6, "mass_spatial": 0.5, "deletion_auc": 0.205}
    assert choose_focus([raw, worse_pointing, worse_deletion, good]) is good
    assert choose_focus([raw, worse_pointing]) is raw


def test_median_interval_brackets_the_median_and_narrows_with_more_pairs():
    import numpy as np

    from staa_serve.benchmarks.compare import median_interval

    assert median_interval(np.full(50, 1.04)) == (1.04, 1.04)
    noise = np.random.default_rng(3).normal(1.05, 0.02, 2000)
    low, high = median_interval(noise[:100])
    assert low < np.median(noise[:100]) < high and low < 1.05 < high
    wide, narrow = high - low, np.subtract(*median_interval(noise)[::-1])
    assert 0 < narrow < wide / 2  # 20x the pairs: about 4.5x narrower


def test_reports_name_the_command_a_reader_can_type():
    from staa_serve.benchmarks.report import REPO_ROOT, command_line

    assert command_line([str(REPO_ROOT / "benchmarks" / "kernels.py"), "--quick"]) == "python -m staa_serve.benchmarks.kernels --quick"
    assert command_line(["/somewhere/.venv/bin/staa-bench", "hostile"]) == "staa-bench hostile"
