"""staa-bench hostile runs end to end on a couple of its cheap attacks: spawned servers, the health probe
in a process of its own, and the report files."""

import csv
import subprocess
import sys


def test_two_round_two_attacks_write_their_rows_with_a_health_column(tmp_path):
    done = subprocess.run([sys.executable, "-m", "staa_serve.benchmarks.cli", "hostile", "--only",
                           "oip_uint_contents_300", "model_name_1MiB", "--out-dir", str(tmp_path), "--name", "smoke"],
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["attack"]: row for row in csv.DictReader((tmp_path / "smoke.csv").open())}
    assert rows["oip_uint_contents_300"]["status"] == "INVALID_ARGUMENT"
    assert rows["model_name_1MiB"]["status"] == "INVALID_ARGUMENT"
    assert all(row["still_serving"] == "True" and float(row["health_max_ms"]) > 0 for row in rows.values())
    report = (tmp_path / "smoke.md").read_text()
    assert "health_max_ms" in report and "smoke_before.md" in report and (tmp_path / "smoke.png").exists()
