"""The GPU check's dry run on CPU: the same code a lent GPU runs, on tiny models (so device time goes to
measuring, not to debugging the script)."""

import csv

from staa_serve.benchmarks.gpu import COLUMNS, main


def test_the_gpu_check_runs_end_to_end_on_cpu(tmp_path):
    main(["--device", "cpu", "--quick", "--pairs", "2", "--stream-seconds", "3", "--out", str(tmp_path)])
    with (tmp_path / "gpu.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    assert {(row["model"], row["batch"]) for row in rows} == {(model, batch) for model in ("timesformer-tiny", "videomae-tiny")
                                                              for batch in ("1", "2")}
    assert all(float(row["windows_per_s"]) > 0 and float(row["plain_windows_per_s"]) > 0 for row in rows)
    assert int(rows[0]["streams_sustained"]) >= 0  # whether a 3 s run sustains depends on the machine's load
    report = (tmp_path / "gpu.md").read_text()
    streams = report.split("## Live streams")[1].split("## Kernels")[0]
    assert "| 1 | " in streams  # the sweep ran its first stream count against the spawned server
    assert "Device test lane (tests/kernels " in report and "): not run" in report
