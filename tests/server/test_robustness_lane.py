"""Robustness scores through both RPCs; the lane never holds up heatmaps; the budget skips loudly."""

import threading
import time

import grpc
import pytest

from clients.client import ExplainerClient, robustness_options
from models.video import decode_clip
from server.app import BackgroundServer
from staa.v1 import explainer_pb2 as pb
from tests.conftest import clip_path, served_config

CLIP = "arm_wrestling.mp4"  # 280 frames: 9 windows of the default model
WINDOWS = 9


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
    assert sorted(score.window_index for score in scores) == [0, 3, 6]
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
