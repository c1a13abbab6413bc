"""Window sampling by index: full windows, hop, padding for short clips, and which frames are needed."""

import itertools

import pytest

from models.sampling import WindowSpec, frame_is_needed, plan_windows


def test_windows_take_T_frames_at_stride_and_hop_one_span_by_default():
    spec = WindowSpec(num_frames=8, stride=4)
    plans = plan_windows(280, spec)
    assert spec.span == 29 and spec.hop == 29
    assert len(plans) == (280 - 29) // 29 + 1 == 9
    assert plans[0].frames == (0, 4, 8, 12, 16, 20, 24, 28)
    assert plans[1].frames[0] == 29 and not any(plan.padded for plan in plans)


def test_overlapping_hop():
    plans = plan_windows(20, WindowSpec(num_frames=4, stride=2, hop=3))
    assert [plan.frames[0] for plan in plans] == [0, 3, 6, 9, 12]
    assert plans[-1].frames[-1] == 18


def test_clip_shorter_than_a_window_repeats_frames_evenly():
    (plan,) = plan_windows(3, WindowSpec(num_frames=8, stride=4))
    assert plan.padded and len(plan.frames) == 8
    assert plan.frames[0] == 0 and plan.frames[-1] == 2
    assert sorted(set(plan.frames)) == [0, 1, 2] and list(plan.frames) == sorted(plan.frames)


@pytest.mark.parametrize("num_frames,stride,hop", list(itertools.product([1, 3, 8], [1, 2, 5], [0, 1, 4, 50])))
def test_frame_is_needed_is_exactly_what_some_window_reads(num_frames, stride, hop):
    spec = WindowSpec(num_frames, stride, hop)
    for total in (1, spec.span - 1, spec.span, 3 * spec.span + 2):
        if total < 1:
            continue
        plans = plan_windows(total, spec)
        read = {index for plan in plans for index in plan.frames}
        needed = {index for index in range(total) if frame_is_needed(index, spec)}
        assert read <= needed  # nothing a window reads is ever skipped
        # Unread but kept: the first span (a padded window may need it) and the tail, which a
        # decoder cannot know is a tail before the clip ends.
        tail_start = len(plans) * spec.hop
        assert {index for index in needed - read if spec.span <= index < tail_start} == set()


def test_bad_geometry_names_the_field():
    with pytest.raises(ValueError, match="WindowSpec.stride must be >= 1, got 0"):
        WindowSpec(8, 0)
    with pytest.raises(ValueError, match="WindowSpec.num_frames"):
        WindowSpec(0, 1)
