"""Robustness scores through both RPCs; the lane never holds up heatmaps; the budget skips loudly."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from staa_serve.clients.client import ExplainerClient, robustness_options
from staa_serve.models.pipeline import ExplanationPipeline
from staa_serve.models.sampling import WindowSpec
from staa_serve.models.staa import StaaParams
from staa_serve.models.video import decode_clip
from staa_serve.models.windowing import iter_array_windows
from staa_serve.server.app import BackgroundServer
from staa_serve.server.errors import Overloaded
from staa_serve.server.robustness_lane import RobustnessLane, WindowCadence, job_slots
from staa.v1 import explainer_pb2 as pb
from tests.conftest import clip_path, served_config

CLIP = "arm_wrestling.mp4"  # 280 frames: 9 windows of the default model on the grid, and the tail window
WINDOWS = 10


def by_kind(events):
    explanations = [event.explanation for event in events if event.WhichOneof("event") == "explanation"]
    scores = [event.robustness for event in events if event.WhichOneof("event") == "robustness"]
    return explanations, scores


def assert_scored(score: pb.Robustness) -> None:
    assert not score.skipped and score.reason == ""
    assert 0 < score.p_clean <= 1 and 0 <= score.p_adv <= 1
    assert score.prediction_robustness == pytest.approx(min(1.0, score.p_adv / score.p_clean), rel=1e-5)
    assert score.flipped == (score.adversarial_class != score.clean_class)
    for name in ("spatial_top10_iou", "explanation_resilience"):
        assert 0 <= getattr(score, name) <= 1
    assert -1 <= score.spearman <= 1 and -1 <= score.kendall_tau <= 1 and 0 <= score.com_shift <= 1
    assert score.passes >= 2 and score.ms > 0


def test_clip_scores_every_nth_window_and_names_it(client):
    events = list(client.explain_clip_events(clip_path(CLIP), robustness=robustness_options("fgsm", 8, every=3)))
    explanations, scores = by_kind(events)
    assert [explanation.window_index for explanation in explanations] == list(range(WINDOWS))
    assert sorted(score.window_index for score in scores) == [0, 3, 6, 9]
    for score in scores:
        assert_scored(score)
        assert score.attack == pb.ATTACK_FGSM and score.epsilon == 8 and score.passes == 4
        assert score.clean_class == explanations[score.window_index].topk[0].class_id


def test_stream_delivers_every_score_before_the_final_ack(client):
    decoded = decode_clip(clip_path(CLIP))
    events = list(client.explain_frames(list(decoded.frames), decoded.fps, speed=0,
                                        robustness=robustness_options("pgd", 4, every=4, steps=2)))
    assert events[-1].WhichOneof("event") == "ack" and events[-1].ack.received == len(decoded.frames)
    explanations, scores = by_kind(events)
    assert len(explanations) == WINDOWS
    assert sorted(score.window_index for score in scores) == [0, 4, 8]
    for score in scores:
        assert_scored(score)
        assert score.attack == pb.ATTACK_PGD and score.steps == 2 and score.passes == 2 + 2 * 2


def test_robustness_off_sends_no_robustness_events(client):
    events = list(client.explain_clip_events(clip_path(CLIP), robustness=robustness_options("off")))
    assert by_kind(events)[1] == [] and len(by_kind(events)[0]) == WINDOWS


@pytest.mark.parametrize("options,message", [
    (pb.RobustnessOptions(attack=pb.ATTACK_FGSM, epsilon=100), "RobustnessOptions.epsilon"),
    (pb.RobustnessOptions(attack=pb.ATTACK_FGSM, epsilon=0), "RobustnessOptions.epsilon"),
    (pb.RobustnessOptions(attack=pb.ATTACK_PGD, steps=50), "max_robustness_steps"),
    (pb.RobustnessOptions(attack=99), "RobustnessOptions.attack"),
    (pb.RobustnessOptions(attack=pb.ATTACK_PGD, step_size=-1), "step_size"),
])
def test_bad_robustness_options_are_invalid_argument_and_the_server_keeps_serving(client, options, message):
    with pytest.raises(grpc.RpcError) as raised:
        list(client.explain_clip_events(clip_path(CLIP), robustness=options))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        list(client.explain_frames([], 30.0, robustness=options))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in raised.value.details()
    assert client.model_info().num_frames > 0


@pytest.fixture(scope="module")
def gated_server():
    """A server whose robustness budget is 2 windows, so the budget and the lane's gate can be watched."""
    with BackgroundServer(served_config(port=0, max_robustness_jobs=2)) as running:
        yield running


def hold_lane(server: BackgroundServer, held: bool) -> None:
    """Make the robustness lane believe explanations are in flight (it waits), or let it go."""
    engine = server.servicer.engine

    async def flip():
        engine.batcher.busy.__enter__() if held else engine.batcher.busy.__exit__(None, None, None)

    server._call(flip())


def test_heatmaps_keep_flowing_while_the_lane_is_held_and_the_budget_skips_loudly(gated_server):
    events, failures = [], []

    def consume():
        try:
            with ExplainerClient(gated_server.target, timeout=300) as client:
                events.extend(client.explain_clip_events(clip_path(CLIP), robustness=robustness_options("fgsm", 4, every=1)))
        except Exception as error:  # surfaced by the asserts below
            failures.append(error)

    hold_lane(gated_server, True)
    reader = threading.Thread(target=consume)
    try:
        reader.start()
        deadline = time.monotonic() + 300
        while len(by_kind(list(events))[0]) < WINDOWS and time.monotonic() < deadline and not failures:
            time.sleep(0.05)
        explanations, scores = by_kind(list(events))
        # every heatmap arrived while the lane could not run a single job
        assert [explanation.window_index for explanation in explanations] == list(range(WINDOWS)), failures
        assert all(score.skipped for score in scores)
    finally:
        hold_lane(gated_server, False)
        reader.join(timeout=300)
    assert not failures
    explanations, scores = by_kind(events)
    assert sorted(score.window_index for score in scores) == list(range(WINDOWS))  # one event per window
    scored = [score for score in scores if not score.skipped]
    skipped = [score for score in scores if score.skipped]
    assert sorted(score.window_index for score in scored) == [0, 1]  # the budget: 2 windows
    assert all("max_robustness_jobs=2" in score.reason for score in skipped) and len(skipped) == WINDOWS - 2
    for score in scored:
        assert_scored(score)
    positions = {id(event): position for position, event in enumerate(events)}
    last_explanation = max(positions[id(event)] for event in events if event.WhichOneof("event") == "explanation")
    first_scored = min(positions[id(event)] for event in events
                       if event.WhichOneof("event") == "robustness" and not event.robustness.skipped)
    assert first_scored > last_explanation  # late results, each naming its window


@pytest.mark.parametrize("live", [False, True])
def test_a_gradient_method_explains_every_window_on_the_lane(client, live):
    staa = pb.StaaOptions(method=pb.METHOD_SALIENCY)
    if live:
        decoded = decode_clip(clip_path(CLIP))
        events = list(client.explain_frames(list(decoded.frames), decoded.fps, speed=0, staa=staa))
    else:
        events = list(client.explain_clip_events(clip_path(CLIP), staa=staa))
    explanations, _ = by_kind(events)
    assert [explanation.window_index for explanation in explanations] == list(range(WINDOWS))
    for explanation in explanations:
        assert explanation.params.method == pb.METHOD_SALIENCY
        assert explanation.params.target_class == explanation.topk[0].class_id
        assert explanation.timings.attribution_ms > 0 and sum(explanation.temporal) == pytest.approx(1, abs=1e-4)
        assert max(explanation.spatial.data) == 255  # each frame's map quantised to its own peak
    targeted = list(client.explain_clip(clip_path(CLIP), staa=pb.StaaOptions(method=pb.METHOD_INPUT_X_GRADIENT,
                                                                              target_class=2)))
    assert all(explanation.params.target_class == 2 and explanation.params.method == pb.METHOD_INPUT_X_GRADIENT
               for explanation in targeted)


def test_gradient_explanations_past_the_lane_budget_are_resource_exhausted(default_model):
    idle = threading.Event()  # cleared: an explanation is "running", so the lane's first job waits
    lane = RobustnessLane(ExplanationPipeline(default_model), job_slots(1), idle, WindowCadence(), ThreadPoolExecutor(1))
    frames = np.zeros((default_model.num_frames, 96, 96, 3), np.uint8)
    (window,) = iter_array_windows(frames, WindowSpec(default_model.num_frames, 1), default_model.processor, 25.0)

    async def scenario():
        first = asyncio.ensure_future(lane.explain(window, "saliency", StaaParams(), 3))
        while lane.slots.active == 0:
            await asyncio.sleep(0)  # let the first job take the budget's one place
        with pytest.raises(Overloaded, match="max_robustness_jobs=1"):
            await lane.explain(window, "saliency", StaaParams(), 3)
        idle.set()  # explanations idle: the first job runs
        return await first

    try:
        explanation = asyncio.run(scenario())
        assert explanation.method == "saliency" and explanation.heatmaps.shape[0] == default_model.num_frames
        assert lane.slots.active == 0
    finally:
        lane.shutdown()

