"""Operations end to end on 127.0.0.1: metrics page, bearer-token auth, TLS, admission, idle timeout,
backpressure drops. Each test runs its own server with the tiny random-weight model (fast forwards)."""

import datetime
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from staa_serve.clients.client import ExplainerClient, open_channel
from staa_serve.server.app import BackgroundServer
from staa import package_version
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc
from tests.conftest import clip_path, served_config, wait_for

CLIP = "ucf101_apply_eye_makeup.avi"


def frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def scrape(port: int) -> dict[tuple, float]:
    """The metrics page, parsed by prometheus_client's own parser: {(sample name, sorted labels): value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sample(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def rpcs_counted(samples: dict) -> float:
    return sum(value for (name, _), value in samples.items() if name == "staa_rpcs_total")


def test_metrics_page_counts_windows_latencies_streams_and_errors(tiny_model_dir):
    with BackgroundServer(served_config(port=0, model=str(tiny_model_dir), metrics_port=0)) as running:
        port = running.running.metrics_port
        with ExplainerClient(running.target, timeout=60) as client:
            client.wait_ready()  # health checks: not counted among the RPCs
            windows = list(client.explain_clip(clip_path(CLIP)))
            events = list(client.explain_frames(frames(40), 25.0, speed=0))
            with pytest.raises(grpc.RpcError):
                list(client.stub.ExplainClip(pb.ClipRequest(clip=b"not a video"), timeout=30))
        # A call is counted once its handler has unwound, which may be just after its client has the status.
        assert wait_for(lambda: rpcs_counted(scrape(port)) == 3)
        samples = scrape(port)
    live = [event for event in events if event.WhichOneof("event") == "explanation"]
    model = next(dict(labels)["model"] for name, labels in samples if name == "staa_windows_explained_total")
    assert sample(samples, "staa_windows_explained_total", model=model, method="staa") == len(windows) + len(live)
    assert sample(samples, "staa_forward_seconds_count", model=model) == len(windows) + len(live)
    assert sample(samples, "staa_frame_to_heatmap_seconds_count", model=model) == len(live) > 0
    assert (sample(samples, "staa_queue_seconds_count", model=model)
            == sample(samples, "staa_attribution_seconds_count", model=model, method="staa"))
    assert 0 < sample(samples, "staa_forward_seconds_sum", model=model) < 60  # seconds, not milliseconds
    assert sample(samples, "staa_errors_total", model=model, code="INVALID_ARGUMENT") == 1
    assert sample(samples, "staa_active_streams") == 0 and sample(samples, "staa_dropped_frames_total", model=model) == 0
    explain_clip = "staa.v1.VideoExplainer/ExplainClip"
    assert sample(samples, "staa_rpcs_total", model=model, rpc=explain_clip, code="OK") == 1
    assert sample(samples, "staa_rpcs_total", model=model, rpc=explain_clip, code="INVALID_ARGUMENT") == 1
    assert sample(samples, "staa_rpcs_total", model=model, rpc="staa.v1.VideoExplainer/StreamExplain", code="OK") == 1
    assert sample(samples, "staa_rpc_seconds_count", model=model, rpc=explain_clip) == 2
    assert not any(dict(labels).get("rpc", "").startswith("grpc.health") for _, labels in samples)
    build = next(dict(labels) for name, labels in samples if name == "staa_build_info")
    assert build == {"version": package_version(), "model": model, "device": "cpu"}
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)  # the standard collectors
    assert any(name == "python_info" for name, _ in samples)


def test_bearer_token_is_required_for_every_rpc_but_health(tiny_model_dir, tmp_path):
    with BackgroundServer(served_config(port=0, model=str(tiny_model_dir), auth_token="s3cret")) as running:
        channel = open_channel(running.target)
        stub = pb_grpc.VideoExplainerStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        for metadata in (None, (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetModelInfo(pb.ModelInfoRequest(), timeout=10, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in refused.value.details()
        with pytest.raises(grpc.RpcError) as streamed:
            list(stub.StreamExplain(iter([pb.StreamRequest(config=pb.StreamConfig())]), timeout=10))
        assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for scheme in ("bearer", "BEARER", "BeArEr"):  # the scheme is case-insensitive (RFC 7235)
            metadata = (("authorization", f"{scheme} s3cret"),)
            assert stub.GetModelInfo(pb.ModelInfoRequest(), timeout=10, metadata=metadata).num_frames == 4
        channel.close()
        with ExplainerClient(running.target, token="s3cret", timeout=60) as client:
            assert client.model_info().num_frames == 4
            assert len(list(client.explain_clip(clip_path(CLIP)))) > 0


def self_signed(tmp_path):
    """A throwaway certificate for 127.0.0.1 / localhost, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_serves_verified_clients_and_refuses_plaintext(tiny_model_dir, tmp_path):
    cert, key = self_signed(tmp_path)
    config = served_config(port=0, model=str(tiny_model_dir), tls_cert=str(cert), tls_key=str(key))
    with BackgroundServer(config) as running:
        with ExplainerClient(running.target, root_certificates=cert.read_bytes(), timeout=60) as client:
            assert client.model_info().num_frames == 4
            assert len(list(client.explain_clip(clip_path(CLIP)))) > 0
        with ExplainerClient(running.target, timeout=5) as plaintext:
            with pytest.raises(grpc.RpcError) as refused:
                plaintext.model_info()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_streams_past_the_admission_limit_get_resource_exhausted(tiny_model_dir):
    with BackgroundServer(served_config(port=0, model=str(tiny_model_dir), max_streams=2)) as running:
        release = threading.Event()

        def held_requests():
            yield pb.StreamRequest(config=pb.StreamConfig())
            release.wait(30)

        channel = open_channel(running.target)
        stub = pb_grpc.VideoExplainerStub(channel)
        held = [stub.StreamExplain(held_requests(), timeout=60) for _ in range(2)]
        deadline = time.monotonic() + 10
        while running.servicer.sessions.active < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.StreamExplain(iter([pb.StreamRequest(config=pb.StreamConfig())]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams=2" in refused.value.details()
        release.set()
        for call in held:
            assert [event.WhichOneof("event") for event in call] == ["ack"]
        channel.close()
        assert wait_for(lambda: running.servicer.sessions.active == 0)


def test_an_idle_stream_is_closed_with_deadline_exceeded(tiny_model_dir):
    config = served_config(port=0, model=str(tiny_model_dir), stream_idle_seconds=0.5)
    with BackgroundServer(config) as running:
        stop = threading.Event()

        def stalls():
            yield pb.StreamRequest(config=pb.StreamConfig())
            stop.wait(20)  # sends nothing more and does not close

        with ExplainerClient(running.target, timeout=30) as client:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as closed:
                list(client.stub.StreamExplain(stalls()))
            took = time.monotonic() - started
            stop.set()
        assert closed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stream_idle_seconds" in closed.value.details() and took < 10
        assert wait_for(lambda: running.servicer.sessions.active == 0)


def test_a_stream_loses_nothing_by_default_and_drops_its_oldest_frames_only_when_asked(tiny_model_dir):
    # A queue of 4 frames and windows that need 13 frames: an unpaced burst must overflow it.
    config = served_config(port=0, model=str(tiny_model_dir), max_pending_frames=4, metrics_port=0)
    with BackgroundServer(config) as running:
        with ExplainerClient(running.target, timeout=60) as client:
            sent = frames(300, 320, 240)
            lossy = list(client.explain_frames(sent, 25.0, speed=0, drop_oldest=True))
            lossless = list(client.explain_frames(sent, 25.0, speed=0))  # no options: the default
        samples = scrape(running.running.metrics_port)

    def summary(events):
        ack = [event.ack for event in events if event.WhichOneof("event") == "ack"][-1]
        windows = [event.explanation.window_index for event in events if event.WhichOneof("event") == "explanation"]
        return ack, windows

    ack, windows = summary(lossy)
    assert ack.received == 300 and ack.dropped > 0
    expected = 300 // 13 + 1  # 23 windows on the grid end at frame 298; the tail window ends at 299
    assert windows == sorted(windows) and len(windows) + ack.windows_skipped == expected
    assert sum(value for (name, _), value in samples.items() if name == "staa_dropped_frames_total") == ack.dropped
    ack, windows = summary(lossless)
    assert (ack.received, ack.dropped, ack.windows_skipped) == (300, 0, 0) and windows == list(range(expected))


def test_json_logs_have_one_access_line_per_call_and_no_progress_bars(tiny_model_dir):
    import json
    import signal
    import subprocess
    import sys
    from pathlib import Path

    binary = Path(sys.executable).parent / "staa-serve"
    process = subprocess.Popen([str(binary), "--port", "0", "--model", str(tiny_model_dir), "--log-format", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        target = process.stdout.readline().split("listening on ")[1].split()[0]
        assert "ready on" in process.stdout.readline()
        with ExplainerClient(target, timeout=60) as client:
            windows = list(client.explain_clip(clip_path(CLIP)))
            with pytest.raises(grpc.RpcError):
                list(client.stub.ExplainClip(pb.ClipRequest(clip=b"not a video"), timeout=30))
            health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert len(lines) == len([line for line in stderr.splitlines() if line.strip()])  # every line is JSON
    access = [line for line in lines if line["logger"] == "staa.access"]
    assert [(line["rpc"], line["status"], line["windows"]) for line in access] == [
        ("/staa.v1.VideoExplainer/ExplainClip", "OK", len(windows)),
        ("/staa.v1.VideoExplainer/ExplainClip", "INVALID_ARGUMENT", 0)]  # health checks are not logged
    assert all(line["model"] and line["peer"].startswith("ipv4:127.0.0.1") and line["duration_ms"] > 0 for line in access)
    assert "Loading weights" not in stderr and "it/s" not in stderr


def test_traces_have_a_span_per_rpc_and_a_child_per_window_stage(tiny_model_dir):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    with BackgroundServer(served_config(port=0, model=str(tiny_model_dir)), span_exporter=exporter) as running:
        with ExplainerClient(running.target, timeout=60) as client:
            client.wait_ready()  # health checks: not counted among the RPCs
            windows = list(client.explain_clip(clip_path(CLIP)))
            with pytest.raises(grpc.RpcError):
                list(client.stub.ExplainClip(pb.ClipRequest(clip=b"not a video"), timeout=30))
            health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    spans = exporter.get_finished_spans()
    rpcs = [span for span in spans if span.name == "staa.v1.VideoExplainer/ExplainClip"]
    assert [span.attributes["rpc.grpc.status_code"] for span in rpcs] == ["OK", "INVALID_ARGUMENT"]  # no health span
    assert rpcs[0].attributes["staa.windows"] == len(windows)
    window_spans = [span for span in spans if span.name == "window"]
    assert len(window_spans) == len(windows)
    assert all(span.parent.span_id == rpcs[0].context.span_id for span in window_spans)
    stages = [span for span in spans if span.parent is not None and span.parent.span_id == window_spans[0].context.span_id]
    assert [span.name for span in stages] == ["decode", "queue", "forward", "attribution", "postprocess"]
    assert all(window_spans[0].start_time <= span.start_time <= span.end_time <= window_spans[0].end_time for span in stages)
    assert all(rpcs[0].start_time <= span.end_time <= rpcs[0].end_time for span in window_spans)


def test_tracing_is_off_unless_an_endpoint_is_configured():
    from staa_serve.server.tracing import tracer_for

    assert tracer_for(environ={}) is None
    assert tracer_for("http://127.0.0.1:4317", environ={}) is not None
    assert tracer_for(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}) is not None
