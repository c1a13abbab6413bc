"""No test can hang the suite: a test past its budget has every thread's stack dumped, fails, and the
run goes on to the next test."""

import subprocess
import sys
import tomllib

from tests.conftest import REPO

OPTIONS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]

HANGING = '''
import threading

def wait_in_helper(event):
    event.wait()

def test_hangs():
    threading.Thread(target=wait_in_helper, args=(threading.Event(),), name="stuck-helper", daemon=True).start()
    threading.Event().wait()

def test_runs_after_the_hang():
    assert True
'''


def test_the_suite_budget_is_at_most_120_seconds_a_test_and_dumps_stacks_first():
    assert 0 < OPTIONS["timeout"] <= 120
    assert OPTIONS["timeout_method"] == "signal"  # fails the one test; "thread" would end the whole run
    assert 0 < OPTIONS["faulthandler_timeout"] <= OPTIONS["timeout"]


def test_a_hanging_test_is_dumped_failed_and_the_run_goes_on(tmp_path):
    (tmp_path / "test_hanging.py").write_text(HANGING)
    # The suite's own settings, scaled down to seconds.
    (tmp_path / "pytest.ini").write_text(f"[pytest]\ntimeout = 3\ntimeout_method = {OPTIONS['timeout_method']}\n"
                                         "faulthandler_timeout = 2\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=90)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "1 failed, 1 passed" in output
    assert "Timeout" in output and "Stack of stuck-helper" in output  # pytest-timeout's dump, every thread
    assert "most recent call first" in output and "wait_in_helper" in output  # faulthandler's, threads in C too
