"""Several models in one server (server/model_set.py): the shipped default and a tiny random model side by
side, each chosen by name through GetModelInfo, ExplainClip, StreamExplain and OIP ModelInfer; unknown
names get NOT_FOUND; metrics, access lines and batches are per model."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from staa_serve.clients.client import ExplainerClient
from staa_serve.models.video import decode_clip
from staa_serve.server.app import BackgroundServer, parse_args
from staa_serve.server.config import ServerConfig
from staa_serve.server.model_set import ModelSpec
from staa.oip import grpc_predict_v2_pb2 as oip
from staa.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from staa.v1 import explainer_pb2 as pb
from tests.conftest import clip_path, served_config, wait_for
from tests.server.test_operations import rpcs_counted, sample, scrape

DEFAULT = "staa-synthkinetics"
CLIP = "ucf101_apply_eye_makeup.avi"


@pytest.fixture(scope="module")
def two_models(tiny_model_dir):
    with BackgroundServer(served_config(port=0, more_models=(f"tiny={tiny_model_dir}",), metrics_port=0)) as running:
        yield running


def grid(explanation: pb.Explanation) -> tuple[int, int, int]:
    return explanation.spatial.frames, explanation.spatial.height, explanation.spatial.width


def test_model_info_names_every_served_model_and_describes_the_one_asked_for(two_models, tiny_model_dir):
    with ExplainerClient(two_models.target, timeout=60) as client:
        default = client.model_info()
        tiny = client.model_info("tiny")
        by_id = client.model_info(tiny_model_dir.name)  # a served model's id selects it too
    assert (default.name, default.model_id, default.num_frames, default.grid_height) == (DEFAULT, DEFAULT, 8, 8)
    assert (tiny.name, tiny.model_id, tiny.num_frames, tiny.grid_height) == ("tiny", tiny_model_dir.name, 4, 4)
    assert by_id == tiny
    assert list(default.served_models) == list(tiny.served_models) == [DEFAULT, "tiny"]


def test_each_model_explains_through_both_rpcs(two_models):
    decoded = decode_clip(clip_path(CLIP))
    frames = list(decoded.frames[:64])
    with ExplainerClient(two_models.target, timeout=120) as client:
        for model, frame_count, side in (("", 8, 8), (DEFAULT, 8, 8), ("tiny", 4, 4)):
            clip = list(client.explain_clip(clip_path(CLIP), model=model))
            live = [event.explanation for event in client.explain_frames(frames, decoded.fps, speed=0, model=model)
                    if event.WhichOneof("event") == "explanation"]
            expected_id = client.model_info(model).model_id
            for explanation in (*clip, *live):
                assert grid(explanation) == (frame_count, side, side)
                assert explanation.provenance.model_id == expected_id
            assert len(clip) > 0 and len(live) > 0
            # The stream's full windows are the clip's first windows, heatmap for heatmap (its 64 frames end
            # on a tail window of their own).
            full = [window.spatial.data for window in live if not window.aligned_to_end]
            assert full and full == [window.spatial.data for window in clip[:len(full)]]


def test_concurrent_calls_on_two_models_each_get_their_own_model(two_models):
    """Batches never mix models: each model has its own batcher, so calls that overlap still get their
    own model's grid and provenance."""
    def explain(model: str) -> list[pb.Explanation]:
        with ExplainerClient(two_models.target, timeout=120) as client:
            return list(client.explain_clip(clip_path("arm_wrestling.mp4"), model=model))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(explain, ["tiny", DEFAULT, "tiny", DEFAULT]))
    for model, windows in zip(["tiny", DEFAULT, "tiny", DEFAULT], results):
        side = 4 if model == "tiny" else 8
        assert windows and all(grid(window)[1:] == (side, side) for window in windows)
    assert [window.spatial.data for window in results[0]] == [window.spatial.data for window in results[2]]


def test_an_unknown_model_gets_not_found_and_the_server_keeps_serving(two_models):
    decoded = decode_clip(clip_path(CLIP))
    with ExplainerClient(two_models.target, timeout=60) as client:
        calls = (lambda: client.model_info("resnet"),
                 lambda: list(client.explain_clip(clip_path(CLIP), model="resnet")),
                 lambda: list(client.explain_frames(list(decoded.frames[:8]), 25.0, speed=0, model="resnet")))
        for call in calls:
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            assert refused.value.details() == f"model 'resnet' is not served here; this server serves '{DEFAULT}', 'tiny'"
        assert client.model_info("tiny").name == "tiny"


def test_oip_model_infer_chooses_the_model_by_name(two_models):
    frames = decode_clip(clip_path(CLIP)).frames[:16]
    with grpc.insecure_channel(two_models.target, options=[("grpc.max_send_message_length", 64 << 20),
                                                           ("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        shapes = {}
        for name in ("tiny", "staa", DEFAULT):
            request = oip.ModelInferRequest(model_name=name)
            request.inputs.add(name="FRAMES", datatype="UINT8", shape=list(frames.shape))
            request.raw_input_contents.append(np.ascontiguousarray(frames).tobytes())
            reply = stub.ModelInfer(request)
            heatmaps = reply.outputs[[output.name for output in reply.outputs].index("HEATMAPS")]
            shapes[name] = (reply.model_name, list(heatmaps.shape)[1:])
        assert shapes == {"tiny": ("tiny", [4, 4, 4]), "staa": (DEFAULT, [8, 8, 8]), DEFAULT: (DEFAULT, [8, 8, 8])}
        assert stub.ModelMetadata(oip.ModelMetadataRequest(name="tiny")).name == "tiny"
        assert stub.ModelReady(oip.ModelReadyRequest(name="tiny")).ready
        assert not stub.ModelReady(oip.ModelReadyRequest(name="resnet")).ready
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelMetadata(oip.ModelMetadataRequest(name="resnet"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_metrics_and_access_lines_carry_each_call_s_model(two_models, caplog):
    def lines():
        return [(record.model, record.status, record.windows) for record in caplog.records
                if getattr(record, "rpc", "").endswith("/ExplainClip")]

    with caplog.at_level(logging.INFO, logger="staa.access"), ExplainerClient(two_models.target, timeout=60) as client:
        before, logged = scrape(two_models.running.metrics_port), len(lines())
        tiny = list(client.explain_clip(clip_path(CLIP), model="tiny"))
        default = list(client.explain_clip(clip_path(CLIP)))
        with pytest.raises(grpc.RpcError):
            list(client.stub.ExplainClip(pb.ClipRequest(clip=b"not a video", model="tiny"), timeout=30))
        # A call is counted and logged as its handler unwinds, which may be just after its client has the
        # status: wait for the three calls' series and lines.
        assert wait_for(lambda: rpcs_counted(scrape(two_models.running.metrics_port)) == rpcs_counted(before) + 3)
        assert wait_for(lambda: len(lines()) == logged + 3)
        after = scrape(two_models.running.metrics_port)

    def grew(name: str, **labels) -> float:
        return sample(after, name, **labels) - before.get((name, tuple(sorted(labels.items()))), 0.0)

    assert grew("staa_windows_explained_total", model="tiny", method="staa") == len(tiny)
    assert grew("staa_windows_explained_total", model=DEFAULT, method="staa") == len(default)
    assert grew("staa_errors_total", model="tiny", code="INVALID_ARGUMENT") == 1
    explain_clip = "staa.v1.VideoExplainer/ExplainClip"
    assert grew("staa_rpcs_total", model="tiny", rpc=explain_clip, code="OK") == 1
    assert grew("staa_rpcs_total", model="tiny", rpc=explain_clip, code="INVALID_ARGUMENT") == 1
    assert grew("staa_rpcs_total", model=DEFAULT, rpc=explain_clip, code="OK") == 1
    builds = {dict(labels)["model"]: dict(labels) for name, labels in after if name == "staa_build_info"}
    assert set(builds) == {DEFAULT, "tiny"}
    assert builds["tiny"]["device"] == str(two_models.servicer.models.resolve("tiny")[1].loaded.device)
    assert lines()[-3:] == [("tiny", "OK", len(tiny)), (DEFAULT, "OK", len(default)), ("tiny", "INVALID_ARGUMENT", 0)]


def test_model_flags_repeat_name_models_and_come_from_the_environment(monkeypatch, tmp_path):
    config = parse_args(["--model", "base=facebook/timesformer-base", "--model", str(tmp_path), "--model", "x=y=z"])
    assert (config.model, config.more_models) == ("base=facebook/timesformer-base", (str(tmp_path), "x=y=z"))
    assert config.model_specs() == [ModelSpec("facebook/timesformer-base", "base"), ModelSpec(str(tmp_path)),
                                    ModelSpec("y=z", "x")]
    monkeypatch.setenv("STAA_MODEL", "a=dir-a, b=dir-b")
    assert parse_args([]).model_specs() == [ModelSpec("dir-a", "a"), ModelSpec("dir-b", "b")]
    assert parse_args(["--model", "c=dir-c"]).model_specs() == [ModelSpec("dir-c", "c")]  # the flag wins
    monkeypatch.delenv("STAA_MODEL")
    assert parse_args([]).model_specs() == [ModelSpec(None)]


@pytest.mark.parametrize("changes, message", [
    ({"model": "a=one", "more_models": ("a=two",)}, "two models are named 'a'"),
    ({"model": None, "more_models": ("default",)}, "'default' is served twice under one name"),
    ({"model": "a=", "more_models": ()}, "nothing after '='"),
    ({"model": "=dir", "more_models": ()}, "empty name before '='"),
])
def test_bad_model_sets_are_refused_before_anything_loads(changes, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**changes)


def test_the_robustness_budget_is_server_wide_not_per_model(two_models):
    """Gradient explanations and robustness scores of every model share one max_robustness_jobs."""
    lanes = [engine.lane for engine in two_models.servicer.models.engines()]
    slots = lanes[0].slots
    assert all(lane.slots is slots for lane in lanes) and slots.limit == two_models.config.max_robustness_jobs
    taken = 0
    try:
        while slots.take():  # the default model's jobs fill the budget...
            taken += 1
        with ExplainerClient(two_models.target, timeout=120) as client:
            with pytest.raises(grpc.RpcError) as refused:  # ...so the tiny model's gradient explanation waits for it
                list(client.explain_clip(clip_path(CLIP), model="tiny", staa=pb.StaaOptions(method=pb.METHOD_SALIENCY)))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"(max_robustness_jobs={slots.limit})" in refused.value.details()
            for _ in range(taken):
                slots.release()
            taken = 0
            explained = list(client.explain_clip(clip_path(CLIP), model="tiny", staa=pb.StaaOptions(method=pb.METHOD_SALIENCY)))
            assert explained and explained[0].params.method == pb.METHOD_SALIENCY
            samples = scrape(two_models.running.metrics_port)  # counted under its own method
            assert sample(samples, "staa_windows_explained_total", model="tiny", method="saliency") >= len(explained)
            assert sample(samples, "staa_attribution_seconds_count", model="tiny", method="saliency") >= len(explained)
    finally:
        for _ in range(taken):
            slots.release()


def test_the_command_line_client_chooses_a_model(two_models, tmp_path, capsys):
    from staa_serve.clients.cli import main

    for live in (False, True):
        out = tmp_path / ("live" if live else "clip")
        assert main(["--server", two_models.target, "--model", "tiny", "explain", str(clip_path(CLIP)), "--out", str(out),
                     "--no-overlay", *(["--live", "--speed", "0"] if live else [])]) == 0
        result = json.loads((out / "explanations.json").read_text())
        assert result["model"]["name"] == "tiny" and result["windows"]
        assert all(len(window["spatial"]) == 4 and len(window["spatial"][0]) == 4 for window in result["windows"])
    assert main(["--server", two_models.target, "--model", "resnet", "info"]) == 2
    assert "NOT_FOUND: model 'resnet' is not served here" in capsys.readouterr().err
