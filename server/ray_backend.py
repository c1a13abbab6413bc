"""Past one machine: the model workers as a Ray Serve deployment, called from our own gRPC front end.

The front end (sessions, decoding, windowing, limits, auth, metrics) stays ours and stays local to
the streams; only the forward + STAA of prepared windows goes to the replicas, one per accelerator
(one on a CPU-only node), each batching with ``@serve.batch``. A window travels as its normalised
resized and cropped uint8 frames (``[T, H, W, 3]``, 1.2 MB for TimeSformer-base, a quarter of
the float input); the replica normalises them on its device with the processor settings of the
model it loaded (the same model as the front end's), and the explanation comes back as a
WindowExplanation. Ray's own gRPC/HTTP proxies are not used: ours is the only public port.

Ray listens and connects on the machine's external address unless told otherwise, and its
dashboard process probes cloud metadata services (169.254.169.254, metadata.google.internal) to
guess the cloud, even with usage stats off, whenever ``~/ray_bootstrap_config.yaml`` is missing.
A private single-node cluster (``RayBackend`` without an address: tests, a workstation) is pinned
to 127.0.0.1 and given a private HOME holding that file, so it never leaves the loopback range.
On a real cluster, start Ray on the nodes first and pass ``--ray-address`` (README, "Running on
a Ray cluster").
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Hashable

from staa_serve.server.batcher import BusyTracker

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "staa-explainer"
STARTUP_ATTEMPTS = 3
# How ray.init says its node started too slowly: the raylet missed its registration deadline, or the
# GCS did not publish its port file in time (both seen on a loaded 2-core machine).
STARTUP_TIMEOUTS = ("timed out during startup", "Timed out waiting for file")
LOOPBACK_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # with this Ray takes 127.0.0.1 as the node address
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report...
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",  # ...and were one sent, it stays on loopback
}
# Read by Ray's usage module instead of asking cloud metadata services what this machine is.
BOOTSTRAP_CONFIG = "# written by STAA Serve: a private single-node Ray on 127.0.0.1\nprovider:\n  type: local\n"


def isolate_for_loopback() -> Path:
    """Environment for a private Ray that stays on 127.0.0.1; returns the private HOME it set.
    Must run before ``import ray`` (the node-address rule is read at import time).

    Every Ray process inherits this process's environment, HOME included (Ray reads
    ~/ray_bootstrap_config.yaml and keeps its auth token under ~/.ray); the Hugging Face cache
    keeps pointing at the user's real one, so hub ids cached there still load.
    """
    for name, value in LOOPBACK_ENVIRONMENT.items():
        os.environ[name] = value
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    home = Path(tempfile.mkdtemp(prefix="staa-ray-home-"))
    (home / "ray_bootstrap_config.yaml").write_text(BOOTSTRAP_CONFIG)
    os.environ["HOME"] = str(home)
    return home


def process_stat(pid: int | str) -> tuple[str, list[str]] | None:
    """(name, the fields after it) from ``/proc/PID/stat``; None once the process is gone. The fields
    start at field 3 of proc(5): state, parent pid, process group, session..."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()


def parents() -> dict[int, int]:
    """{pid: parent pid} of every process (from /proc; empty where there is none)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        if (stat := process_stat(entry.name)) is not None:
            found[int(entry.name)] = int(stat[1][1])
    return found


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents().items():
        children.setdefault(parent, []).append(pid)
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def start_private_ray(init: Callable[[], object], attempts: int = STARTUP_ATTEMPTS) -> None:
    """``init()`` (a private ``ray.init``), tried again when the node misses Ray's startup deadline.

    Ray waits a fixed 30 s for its raylet to register with the GCS; on a loaded 2-core machine the
    Python agents the raylet waits for can take longer. A failed start leaves its processes (GCS,
    raylet and the raylet's agents, log monitor...) running without a handle to stop them, so every
    process it started below this one is killed before the next try (the raylet's runtime-env agent
    outlives a killed raylet).
    """
    for attempt in range(1, attempts + 1):
        before = descendants(os.getpid())
        try:
            init()
            return
        except Exception as error:
            if not any(timeout in str(error) for timeout in STARTUP_TIMEOUTS) or attempt == attempts:
                raise
            leftover = descendants(os.getpid()) - before
            logger.warning("Ray's node missed its startup deadline (attempt %d of %d); stopping its %d "
                           "processes and starting again", attempt, attempts, len(leftover))
            for pid in leftover:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in leftover:
                try:
                    os.waitpid(pid, 0)  # our own children: reap them (the others are not ours to wait on)
                except ChildProcessError:
                    pass


def _replica_class():
    """The deployment, defined on first use so that a server without --ray never imports Ray."""
    from ray import serve

    from staa_serve.models.pipeline import ExplanationPipeline
    from staa_serve.models.registry import load_model

    class ExplainerReplica:
        def __init__(self, model: str | None, max_batch: int, max_batch_wait_ms: float, attention: str, dtype: str):
            self.loaded = load_model(model, device="auto", attention=attention, dtype=dtype)  # Ray shows each its GPU
            self.pipeline = ExplanationPipeline(self.loaded)
            self.explain.set_max_batch_size(max_batch)
            self.explain.set_batch_wait_timeout_s(max_batch_wait_ms / 1e3)

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
        async def explain(self, requests: list) -> list:
            """``requests``: (window, (params, top_k)) pairs -> one WindowExplanation each, in order.
            Windows asking for different parameters go through separate forwards."""
            results: list = [None] * len(requests)
            groups: dict[Hashable, list[int]] = {}
            for position, (_, key) in enumerate(requests):
                groups.setdefault(key, []).append(position)
            for (params, top_k), positions in groups.items():
                started = time.perf_counter()
                explained = self.pipeline.explain([requests[position][0] for position in positions], params, top_k)
                replica_ms = (time.perf_counter() - started) * 1e3 / len(positions)
                for position, explanation in zip(positions, explained):
                    explanation.timings.replica_ms = replica_ms
                    results[position] = explanation
            return results

        def model_id(self) -> str:
            return self.loaded.model_id

    return serve.deployment(ExplainerReplica, name=DEPLOYMENT_NAME)


class RayBatcher:
    """The MicroBatcher's interface (``submit``, ``idle``, ``close``) over a Ray Serve deployment handle."""

    def __init__(self, handle):
        self.handle = handle
        self.busy = BusyTracker()
        self.idle = self.busy.idle

    async def submit(self, item, key: Hashable, priority: int = 0):
        """``priority`` is not passed on: the replicas' own queue serves requests in arrival order."""
        started = time.perf_counter()
        with self.busy:
            explanation = await self.handle.explain.remote((item, key))
        round_trip = time.perf_counter() - started
        return explanation, max(0.0, round_trip - explanation.timings.replica_ms / 1e3)

    def close(self) -> None:
        self.idle.set()


def application_name(model_name: str) -> str:
    """The Ray Serve application of one served model (hub ids' slashes are not kept)."""
    return f"{DEPLOYMENT_NAME}-" + re.sub(r"[^A-Za-z0-9._-]", "-", model_name)


class RayBackend:
    """Starts (or joins) Ray and Ray Serve once; ``deploy`` puts up one served model's replicas as their
    own Serve application and hands out a RayBatcher for them; ``stop`` undoes it all.

    Each model gets ``replicas`` replicas (default: one per GPU, one on a CPU-only node); with several
    models, a replica asks for its share of a GPU and a CPU (``1 / models``), so the models' replicas
    fit side by side on the devices one model alone would use."""

    def __init__(self, address: str | None = None, replicas: int | None = None, max_batch: int = 8,
                 max_batch_wait_ms: float = 2.0, attention: str = "fused", dtype: str = "auto", models: int = 1):
        self.private_home = None
        if address is None:  # a private single-node cluster on loopback
            self.private_home = isolate_for_loopback()  # before Ray is imported: it reads some at import time
        import ray
        from ray import serve

        if address is None:
            start_private_ray(lambda: ray.init(_node_ip_address="127.0.0.1", include_dashboard=False,
                                               log_to_driver=False))
        else:
            ray.init(address=address, log_to_driver=False)
        self.gpus = int(ray.cluster_resources().get("GPU", 0))
        self.replicas = replicas or max(1, self.gpus)
        self.share = 1.0 / models
        self.settings = (max_batch, max_batch_wait_ms, attention, dtype)
        serve.start(proxy_location="Disabled", http_options={"host": "127.0.0.1"})

    def deploy(self, model: str | None, name: str) -> RayBatcher:
        """Replicas of ``model`` (as the front end loaded it) as application ``application_name(name)``."""
        from ray import serve

        deployment = _replica_class().options(
            num_replicas=self.replicas,
            ray_actor_options={"num_cpus": self.share, "num_gpus": self.share if self.gpus else 0},
        )
        application = application_name(name)
        handle = serve.run(deployment.bind(model, *self.settings), name=application, route_prefix=None)
        model_id = handle.model_id.remote().result()
        logger.info("Ray Serve application %s: %d replica(s) of %s", application, self.replicas, model_id)
        return RayBatcher(handle)

    def stop(self) -> None:
        import ray
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if self.private_home is not None:  # its auth token and bootstrap file: nothing to keep
                shutil.rmtree(self.private_home, ignore_errors=True)

