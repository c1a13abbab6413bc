"""Live places are shared fairly: one client holds at most max_streams_per_peer of them, and a stream
that sends nothing gives its place back after stream_config_seconds, not after stream_idle_seconds."""

import threading

import grpc
import pytest

from staa_serve.clients.client import ExplainerClient
from staa_serve.server.app import BackgroundServer
from staa_serve.server.errors import Overloaded
from staa_serve.server.session import SessionRegistry, peer_host
from staa.v1 import explainer_pb2 as pb
from tests.conftest import served_config, wait_for


def test_a_peer_is_its_address_without_the_port():
    assert peer_host("ipv4:127.0.0.1:50123") == peer_host("ipv4:127.0.0.1:41000") == "ipv4:127.0.0.1"
    assert peer_host("ipv6:[::1]:50123") == "ipv6:[::1]"
    assert peer_host("unix:/run/staa.sock") == "unix:/run/staa.sock"


def test_each_peer_has_its_own_share_of_the_live_places():
    registry = SessionRegistry(max_streams=4, max_streams_per_peer=2)
    with registry.admit("ipv4:10.0.0.1"), registry.admit("ipv4:10.0.0.1"):
        with pytest.raises(Overloaded, match="max_streams_per_peer=2"):
            with registry.admit("ipv4:10.0.0.1"):
                pass
        with registry.admit("ipv4:10.0.0.2"), registry.admit("ipv4:10.0.0.2"):
            assert registry.active == 4
            with pytest.raises(Overloaded, match="max_streams=4"):
                with registry.admit("ipv4:10.0.0.3"):
                    pass
    assert registry.active == 0
    with registry.admit("ipv4:10.0.0.1"), registry.admit("ipv4:10.0.0.1"):  # places given back
        assert registry.active == 2
    assert SessionRegistry(max_streams=3, max_streams_per_peer=16).max_streams_per_peer == 3


def test_silent_streams_from_one_client_take_only_its_share_and_leave_after_stream_config_seconds(tiny_model_dir):
    config = served_config(port=0, model=str(tiny_model_dir), max_streams=8, max_streams_per_peer=2,
                           stream_config_seconds=3.0, stream_idle_seconds=600)
    release = threading.Event()

    def silent():
        release.wait(timeout=120)
        yield from ()

    with BackgroundServer(config) as server, ExplainerClient(server.target, timeout=60) as client:
        try:
            outcomes = []
            held = [client.stub.StreamExplain(silent(), timeout=60) for _ in range(2)]
            # The third only once both hold their places (an event, not a pause), well inside 3 s.
            assert wait_for(lambda: server.servicer.sessions.active == 2)
            for call in [*held, client.stub.StreamExplain(silent(), timeout=60)]:
                try:
                    list(call)
                    outcomes.append(("OK", ""))
                except grpc.RpcError as error:
                    outcomes.append((error.code().name, error.details()))
        finally:
            release.set()
        assert sorted(code for code, _ in outcomes) == ["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"]
        assert any("max_streams_per_peer=2" in details for _, details in outcomes)
        assert any("no StreamConfig within 3 s (stream_config_seconds)" in details for _, details in outcomes)
        # The places are back (each is released as its handler unwinds, which may follow the client's
        # status): a configured stream is served.
        assert wait_for(lambda: server.servicer.sessions.active == 0)
        frames = [pb.StreamRequest(config=pb.StreamConfig(fps=25))] + [
            pb.StreamRequest(frame=pb.Frame(rgb24=bytes(32 * 32 * 3), width=32, height=32, sequence=index))
            for index in range(8)]
        events = list(client.stub.StreamExplain(iter(frames), timeout=60))
        assert any(event.WhichOneof("event") == "explanation" for event in events)
