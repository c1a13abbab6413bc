"""The model workers as a Ray Serve deployment: a private single-node Ray on 127.0.0.1 behind our gRPC front end.

Ray starts once for this module (about 15 s and 1 GiB), inside a server process that leads its own
session, and the whole session is ended on teardown (Ray leaves agent processes behind a killed
driver). Every TCP connection of those processes must be between loopback addresses.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from staa_serve.clients.client import ExplainerClient
from staa_serve.server.app import BackgroundServer
from staa_serve.server.ray_backend import process_stat
from tests.conftest import REPO, clip_path, served_config

CLIP = "ucf101_apply_eye_makeup.avi"
SECOND = "synth"  # the shipped default model, served second under this name: its own Ray Serve application
TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def session_processes(leader: int) -> dict[int, str]:
    """{pid: name} of every live process in ``leader``'s session (Ray's workers get their own process
    groups, not their own sessions)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        if (stat := process_stat(entry.name)) is not None and int(stat[1][3]) == leader:  # the session id
            found[int(entry.name)] = stat[0]
    return found


def _address(hex_address: str) -> str:
    host, _ = hex_address.split(":")
    if len(host) == 8:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16)))
    return socket.inet_ntop(socket.AF_INET6, b"".join(struct.pack("<I", int(host[i : i + 8], 16)) for i in range(0, 32, 8)))


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1",) or address.startswith("::ffff:127.")


def sockets_of(pids) -> list[dict]:
    """TCP and UDP sockets held by ``pids``, from /proc/net/* (the system's socket table)."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append({"pid": inodes[fields[9]], "table": table, "local": _address(fields[1]),
                              "remote": _address(fields[2]), "state": TCP_STATES.get(fields[3], fields[3])
                              if table.startswith("tcp") else "UDP"})
    return found


def end_session(leader: int, grace: float = 20.0) -> None:
    """SIGTERM the server (it drains and stops Ray), then SIGKILL whatever of its session is left."""
    try:
        os.kill(leader, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and session_processes(leader):
        time.sleep(0.2)
    for pid in session_processes(leader):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def ray_server(tiny_model_dir):
    environment = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "staa_serve.server.app", "--port", "0", "--model", str(tiny_model_dir),
         "--model", f"{SECOND}=default", "--ray", "--grace", "2"],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own session: Ray's processes join it, and teardown ends it whole
    try:
        port, seen = None, []
        for line in process.stdout:
            seen.append(line)
            if match := re.search(r"ready on 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "server with --ray did not become ready:\n" + "".join(seen[-30:])
        yield process, f"127.0.0.1:{port}"
    finally:
        end_session(process.pid)
        process.stdout.close()
        process.wait(timeout=10)


def test_a_clip_explained_through_ray_serve_matches_the_local_server(ray_server, tiny_model_dir):
    process, target = ray_server
    with ExplainerClient(target, timeout=120) as client:
        through_ray = list(client.explain_clip(clip_path(CLIP)))
        live = [event for event in client.explain_frames(
            [window for window in _frames(clip_path(CLIP))], 25.0, speed=0) if event.WhichOneof("event") == "explanation"]
    with BackgroundServer(served_config(port=0, model=str(tiny_model_dir))) as local:
        with ExplainerClient(local.target, timeout=120) as client:
            here = list(client.explain_clip(clip_path(CLIP)))
    assert len(through_ray) == len(here) == len(live) > 0
    for remote, local_window in zip(through_ray, here):
        assert remote.spatial.data == local_window.spatial.data
        assert [score.class_id for score in remote.topk] == [score.class_id for score in local_window.topk]
        assert remote.timings.forward_ms > 0


def test_a_second_model_has_its_own_replicas(ray_server, client):
    """Two models through Ray: each its own application, the second's heatmaps the local server's."""
    process, target = ray_server
    with ExplainerClient(target, timeout=120) as remote:
        info = remote.model_info(SECOND)
        through_ray = list(remote.explain_clip(clip_path(CLIP), model=SECOND))
    here = list(client.explain_clip(clip_path(CLIP)))  # the session's local server: the same default model
    assert (info.name, info.model_id, list(info.served_models)[1:]) == (SECOND, "staa-synthkinetics", [SECOND])
    assert len(through_ray) == len(here) > 0
    assert [window.spatial.data for window in through_ray] == [window.spatial.data for window in here]


def _frames(path):
    from staa_serve.models.video import decode_clip

    return list(decode_clip(path).frames)


def test_every_connection_of_the_ray_processes_stays_on_loopback(ray_server):
    process, target = ray_server
    with ExplainerClient(target, timeout=120) as client:  # traffic through every component first
        assert len(list(client.explain_clip(clip_path(CLIP)))) > 0
    time.sleep(2.0)  # let periodic reports (usage, metrics, health) run
    processes = session_processes(process.pid)
    names = set(processes.values())
    assert any("raylet" in name for name in names) and any("gcs_server" in name for name in names), names
    sockets = sockets_of(processes)
    connections = [entry for entry in sockets if entry["state"] not in ("LISTEN", "UDP")
                   or (entry["state"] == "UDP" and entry["remote"] not in ("0.0.0.0", "::"))]
    assert connections, "expected Ray's processes to hold connections"
    outside = [entry for entry in connections if not (is_loopback(entry["local"]) and is_loopback(entry["remote"]))]
    assert not outside, outside
    # Listeners: all on loopback except Ray Serve 2.60's inter-deployment gRPC server in each replica,
    # which binds [::] unconditionally (replica.py); nothing here connects to it from outside.
    wildcard = [entry for entry in sockets if entry["state"] == "LISTEN" and not is_loopback(entry["local"])]
    assert all(processes[entry["pid"]].startswith("ray::ServeRepli") for entry in wildcard), \
        [(processes[entry["pid"]], entry) for entry in wildcard]


@pytest.mark.parametrize("late", ["The current node timed out during startup. This could happen because ...",
                                  "Timed out waiting for file /tmp/ray/session_x/gcs_server_port_0123"])
def test_a_start_that_misses_rays_deadline_is_retried_after_its_processes_are_stopped(late):
    from staa_serve.server.ray_backend import descendants, start_private_ray

    spawned, calls = [], []

    def init():  # the first start leaves a process and its child behind, and fails the way ray.init does
        calls.append(1)
        if len(calls) == 1:
            shell = subprocess.Popen(["sh", "-c", "sleep 60 & wait"]).pid
            deadline = time.monotonic() + 10
            while not descendants(shell) and time.monotonic() < deadline:
                time.sleep(0.01)
            spawned.extend([shell, *descendants(shell)])
            raise Exception(late)

    start_private_ray(init)
    assert len(calls) == 2 and len(spawned) == 2
    assert not [pid for pid in spawned if running(pid)], spawned


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan waits for PID 1 to reap it, which may take a while)."""
    stat = process_stat(pid)
    return stat is not None and stat[1][0] != "Z"


def test_other_start_errors_and_the_last_timeout_are_raised():
    from staa_serve.server.ray_backend import STARTUP_TIMEOUTS, start_private_ray

    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("no such address")

    with pytest.raises(RuntimeError, match="no such address"):
        start_private_ray(broken)
    assert len(calls) == 1

    def always_late():
        calls.append(1)
        raise Exception(STARTUP_TIMEOUTS[0])

    with pytest.raises(Exception, match=STARTUP_TIMEOUTS[0]):
        start_private_ray(always_late, attempts=2)
    assert len(calls) == 3
