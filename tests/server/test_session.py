"""Sessions and option resolution as plain Python, without gRPC."""

import numpy as np
import pytest
import torch

from staa_serve.models.errors import InvalidInput
from staa_serve.models.staa import StaaParams
from staa_serve.server.errors import Overloaded
from staa_serve.server.session import ExplainOptions, FrameInput, SessionRegistry, StreamSession, resolve_window
from tests.conftest import served_config


@pytest.fixture(scope="module")
def config():
    return served_config(max_streams=2)


def make_session(default_model, config, session_id=1):
    options = ExplainOptions(resolve_window(default_model, config, 0, 2, 3), StaaParams(), 5)
    return StreamSession(session_id, options, default_model, config, fps=10.0, ack_every=4)


def rgb(sequence, width=40, height=30):
    return FrameInput("rgb24", bytes(width * height * 3), width, height, sequence, 0.0)


def test_window_defaults_come_from_the_model(default_model, config):
    spec = resolve_window(default_model, config, 0, 0, 0)
    assert (spec.num_frames, spec.stride, spec.hop) == (8, default_model.default_stride, spec.span)


def test_live_session_emits_windows_as_they_complete(default_model, config):
    session = make_session(default_model, config)
    emitted = [window.plan.index for index in range(30) for window in session.accept_frame(index, rgb(index * 3))]
    # T=8, stride 2 -> span 15; hop 3 -> windows end at frames 14, 17, 20, 23, 26, 29
    assert emitted == [0, 1, 2, 3, 4, 5]
    assert session.finish() == []


def test_acks_come_every_ack_every_frames(default_model, config):
    session = make_session(default_model, config)  # ack_every=4
    due = []
    for _ in range(10):
        session.received += 1
        due.append(session.ack_due())
    assert due == [False, False, False, True, False, False, False, True, False, False]


def test_dropped_frames_skip_the_windows_that_needed_them(default_model, config):
    session = make_session(default_model, config)
    # frame 17 never reaches the assembler (dropped). Windows start every 3 frames and read every
    # 2nd frame: windows 1, 3, 5 (frames 3..17, 9..23, 15..29) read it, windows 0, 2, 4 do not.
    emitted = [window.plan.index for index in range(30) if index != 17
               for window in session.accept_frame(index, rgb(index))]
    assert emitted == [0, 2, 4]
    session.note_dropped(1)
    assert (session.dropped, session.windows_skipped) == (1, 3)


def test_short_live_stream_gets_one_padded_window_at_the_end(default_model, config):
    session = make_session(default_model, config)
    for index in range(5):
        assert session.accept_frame(index, rgb(index)) == []
    (window,) = session.finish()
    size = default_model.image_size
    assert window.plan.padded and window.frames.shape == (8, size, size, 3) and window.frames.dtype == torch.uint8


def test_registry_counts_streams_from_admission_before_their_config_and_frees_them():
    registry = SessionRegistry(2)
    with registry.admit(), registry.admit():  # two streams that have not sent their StreamConfig yet
        assert registry.active == 2
        with pytest.raises(Overloaded, match="max_streams=2"):
            with registry.admit():
                pass
    assert registry.active == 0
    with registry.admit():
        assert registry.active == 1


def test_windows_of_a_live_session_match_the_frames_sent(default_model, config):
    session = make_session(default_model, config)
    frames = np.random.default_rng(0).integers(0, 255, (15, 30, 40, 3), dtype=np.uint8)
    windows = [window for index, pixels in enumerate(frames)
               for window in session.accept_frame(index, FrameInput("rgb24", pixels.tobytes(), 40, 30, index, 0.0))]
    assert len(windows) == 1 and windows[0].plan.frames == tuple(range(0, 15, 2))
    assert windows[0].source_size == (40, 30) and windows[0].fps == 10.0


def test_sequence_numbers_must_increase():
    from staa_serve.server.frame_queue import SequenceCheck

    check = SequenceCheck()
    for sequence in (0, 1, 5):
        check(sequence)
    with pytest.raises(InvalidInput, match="Frame.sequence=5 is not greater than the previous 5"):
        check(5)


def test_window_cadence_predicts_the_next_window_and_ignores_stalled_streams():
    from staa_serve.server.robustness_lane import WindowCadence

    cadence = WindowCadence()
    assert cadence.slack(now=0.0) == float("inf")  # no live stream: nothing to make room for
    for when in (0.0, 0.25, 0.5):
        cadence.note("paced", now=when)
    assert cadence.slack(now=0.6) == pytest.approx(0.15)  # next due at 0.75
    assert cadence.slack(now=0.8) == 0.0  # due: hold the lane
    assert cadence.slack(now=1.1) == float("inf")  # more than an interval overdue: not pacing any more
    cadence.note("other", now=0.55)
    cadence.note("other", now=0.65)
    assert cadence.slack(now=0.7) == pytest.approx(0.05)  # the earliest stream counts
    cadence.forget("other")
    assert cadence.slack(now=0.7) == pytest.approx(0.05)  # "paced" is due at 0.75 too
