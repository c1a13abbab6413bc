"""The console entry points, as a user runs them: staa-serve in its own process, staa-client against it."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest

from tests.conftest import clip_path

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def served():
    process = subprocess.Popen([str(BIN / "staa-serve"), "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert "listening on" in line, line
    target = line.split("listening on ")[1].split()[0]
    ready = process.stdout.readline()  # printed once the model is warm
    assert "ready on" in ready, ready
    yield target
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def client(*args, **kwargs):
    return subprocess.run([str(BIN / "staa-client"), *args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.parametrize("live", [False, True])
def test_explain_writes_json_and_overlay(served, tmp_path, live):
    out = tmp_path / "out"
    args = ["--server", served, "explain", str(clip_path("flipping_pancake.mkv")), "--out", str(out)]
    result = client(*args, *(["--live", "--speed", "0"] if live else []))
    assert result.returncode == 0, result.stderr
    assert "window   0" in result.stdout and "forward" in result.stdout
    document = json.loads((out / "explanations.json").read_text())
    assert document["model"]["model_id"] == "staa-synthkinetics"
    window = document["windows"][0]
    assert len(document["windows"]) == 11  # 310 frames: 10 windows on the grid and the tail window
    assert {"index", "frames", "topk", "temporal", "spatial", "crop", "timings_ms"} <= set(window)
    assert len(window["spatial"]) == 8 and len(window["spatial"][0]) == 8 and len(window["spatial"][0][0]) == 8
    assert sum(window["temporal"]) == pytest.approx(1.0, abs=1e-4)
    assert {"label", "prob"} <= set(window["topk"][0])
    with av.open(str(out / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 11 * 8


@pytest.mark.parametrize("live", [False, True])
def test_explain_with_robustness_puts_scores_on_every_nth_window(served, tmp_path, live):
    out = tmp_path / "out"
    args = ["--server", served, "explain", str(clip_path("flipping_pancake.mkv")), "--out", str(out), "--no-overlay",
            "--robustness", "fgsm", "--epsilon", "8", "--every", "4"]
    result = client(*args, *(["--live", "--speed", "0"] if live else []))
    assert result.returncode == 0, result.stderr
    assert "window   4 robustness fgsm eps 8/255" in result.stdout
    windows = json.loads((out / "explanations.json").read_text())["windows"]
    assert [window["index"] for window in windows if "robustness" in window] == [0, 4, 8]
    scores = windows[4]["robustness"]
    assert scores["window_index"] == 4 and scores["attack"] == "fgsm" and scores["epsilon"] == 8
    assert {"flipped", "p_clean", "p_adv", "prediction_robustness", "spatial_top10_iou", "spearman", "kendall_tau",
            "com_shift", "explanation_resilience", "passes", "ms"} <= set(scores)
    assert 0 <= scores["explanation_resilience"] <= 1 and scores["passes"] == 4


@pytest.mark.parametrize("live", [False, True])
def test_explain_with_the_class_sensitive_method_echoes_method_and_class(served, tmp_path, live):
    runs = {}
    for target in (None, 3):
        out = tmp_path / f"out-{target}"
        args = ["--server", served, "explain", str(clip_path("flipping_pancake.mkv")), "--out", str(out), "--no-overlay",
                "--method", "staa_class", "--kappa", "-10", "--gamma", "1", *(["--target", str(target)] if target else [])]
        result = client(*args, *(["--live", "--speed", "0"] if live else []))
        assert result.returncode == 0, result.stderr
        runs[target] = json.loads((out / "explanations.json").read_text())["windows"]
        assert "staa_class class" in result.stdout
    for predicted, targeted in zip(runs[None], runs[3]):
        assert predicted["params"]["method"] == targeted["params"]["method"] == "METHOD_STAA_CLASS"
        assert predicted["params"]["target_class"] == predicted["topk"][0]["class_id"]  # default: the prediction
        assert targeted["params"]["target_class"] == 3 and predicted["params"]["kappa"] == -10
    assert any(predicted["spatial"] != targeted["spatial"] for predicted, targeted in zip(runs[None], runs[3])
               if predicted["params"]["target_class"] != 3)  # another class, other maps


def test_target_class_outside_the_model_or_without_staa_class_is_refused(served, tmp_path):
    clip = str(clip_path("flipping_pancake.mkv"))
    result = client("--server", served, "explain", clip, "--out", str(tmp_path), "--method", "staa_class", "--target", "99")
    assert result.returncode == 2 and "INVALID_ARGUMENT" in result.stderr and "target_class=99" in result.stderr
    result = client("--server", served, "explain", clip, "--out", str(tmp_path), "--target", "1")
    assert result.returncode == 2 and "INVALID_ARGUMENT" in result.stderr and "METHOD_STAA_CLASS" in result.stderr


def test_bad_robustness_option_exits_2_with_the_status(served, tmp_path):
    result = client("--server", served, "explain", str(clip_path("flipping_pancake.mkv")), "--out", str(tmp_path),
                    "--robustness", "pgd", "--epsilon", "500")
    assert result.returncode == 2 and "INVALID_ARGUMENT" in result.stderr and "epsilon" in result.stderr


def test_failing_call_exits_non_zero_with_status(served, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"definitely not a video" * 100)
    result = client("--server", served, "explain", str(bad), "--out", str(tmp_path / "o"), "--no-overlay")
    assert result.returncode == 2
    assert "INVALID_ARGUMENT" in result.stderr and "could not be opened" in result.stderr


def test_unreachable_server_exits_non_zero(tmp_path):
    result = client("--server", "127.0.0.1:1", "--timeout", "5", "info")
    assert result.returncode == 2 and "UNAVAILABLE" in result.stderr


def test_info_prints_the_model(served):
    result = client("--server", served, "info")
    assert result.returncode == 0 and json.loads(result.stdout)["architecture"] == "timesformer"
