"""Process pools never fork a process that already runs threads.

A forked child inherits every lock another thread held at the fork, and hangs on the first one it
takes (seen: a training-window pool forked inside the test process after gRPC and PyAV threads were
alive, its children stuck in ``sws_freeContext``). Pools spawn instead; these tests hold every pool to
that, in a process that serves gRPC and has decoded video, and in the source."""

import ast
import json
import subprocess
import sys

from tests.conftest import REPO, clip_path

# Runs in a fresh interpreter, so the threads and the patched os.fork are its own: it serves the default
# model on 127.0.0.1, explains a shared clip through it (PyAV decodes on the server's threads), then
# builds training windows with two workers while any os.fork raises.
BUSY_PROCESS = """
import json, os, sys, threading
import numpy as np
from staa_serve.clients.client import ExplainerClient
from staa_serve.models.preprocess import ProcessorSettings
from staa_serve.models.random_weights import processor_config_for
from staa_serve.models.synthetic.dataset import build_windows
from staa_serve.models.synthetic.generate import sample_clip_spec
from staa_serve.models.synthetic.train import IMAGE_SIZE
from staa_serve.server.app import BackgroundServer
from staa_serve.server.config import ServerConfig

with BackgroundServer(ServerConfig(port=0)) as server, ExplainerClient(server.target) as client:
    explained = len(list(client.explain_clip(sys.argv[1])))
    threads = threading.active_count()

    def refuse_fork():
        raise RuntimeError(f"os.fork() in a process running {threading.active_count()} threads")

    os.fork = refuse_fork
    seeds = list(range(500, 506))
    settings = ProcessorSettings.from_dict(processor_config_for(IMAGE_SIZE))
    windows = build_windows(seeds, (0.0, 0.5), 4, 2, settings, workers=2)
    expected = [sample_clip_spec(seed).class_id for seed in seeds]
    print(json.dumps({"explained": explained, "threads": threads, "shape": list(windows.pixels.shape),
                      "labels": windows.labels.tolist(), "expected": expected,
                      "blank": int((windows.pixels.reshape(len(seeds), -1).float().std(dim=1) == 0).sum())}))
"""


def test_training_windows_build_with_workers_in_a_process_serving_grpc_after_pyav_decoded():
    done = subprocess.run([sys.executable, "-c", BUSY_PROCESS, str(clip_path("arm_wrestling.mp4"))], cwd=REPO,
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["explained"] > 0 and report["threads"] > 1  # the pool started beside live threads
    assert report["shape"][:2] == [6, 4] and report["shape"][-1] == 3
    assert report["labels"] == report["expected"] and report["blank"] == 0


def pool_calls(tree: ast.AST):
    """Every call that makes a process pool or forks: (line, call name, its keyword names)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if name in ("ProcessPoolExecutor", "Pool", "Process") or (owner == "os" and name in ("fork", "forkpty")):
                yield node.lineno, f"{owner}.{name}".lstrip("."), {keyword.arg for keyword in node.keywords}


def test_every_process_pool_in_the_source_is_given_a_spawn_or_forkserver_context():
    sources = [path for folder in ("models", "server", "clients", "kernels", "benchmarks")
               for path in (REPO / folder).rglob("*.py")]
    found, unsafe = [], []
    for path in sources:
        text = path.read_text()
        for line, name, keywords in pool_calls(ast.parse(text)):
            found.append(f"{path.relative_to(REPO)}:{line}")
            # A pool must name its context; the only contexts named in the source are spawn and forkserver.
            if name.startswith("os.") or ("mp_context" not in keywords and name == "ProcessPoolExecutor") \
                    or (name in ("Pool", "Process") and "get_context(" not in text):
                unsafe.append(f"{path.relative_to(REPO)}:{line} {name}")
        assert 'get_context("fork")' not in text and "get_context('fork')" not in text, path
        assert "set_start_method(\"fork\")" not in text, path
    assert found, "the training-window pool was not found: this test no longer looks where pools are made"
    assert unsafe == []


def test_the_check_above_catches_a_forking_pool():
    forking = "from concurrent.futures import ProcessPoolExecutor\nwith ProcessPoolExecutor(2) as pool: pass\nos.fork()"
    found = sorted(pool_calls(ast.parse(forking)))
    assert [(name, "mp_context" in keywords) for _, name, keywords in found] == [("ProcessPoolExecutor", False),
                                                                                 ("os.fork", False)]
