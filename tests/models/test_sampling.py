"""Window sampling by index: full windows, hop, padding for short clips, and which frames are needed."""

import itertools

import pytest

from staa_serve.models.sampling import WindowSpec, frame_is_needed, frames_for_length, plan_windows


def test_windows_take_T_frames_at_stride_and_hop_one_span_by_default():
    spec = WindowSpec(num_frames=8, stride=4)
    plans = plan_windows(280, spec)
    assert spec.span == 29 and spec.hop == 29
    assert len(plans) == (280 - 29) // 29 + 1 + 1 == 10  # 9 full windows cover frames 0-260, the tail 251-279
    assert plans[0].frames == (0, 4, 8, 12, 16, 20, 24, 28)
    assert plans[1].frames[0] == 29 and not any(plan.padded for plan in plans)
    assert [plan.aligned_to_end for plan in plans] == [False] * 9 + [True]
    assert plans[-1].frames == (251, 255, 259, 263, 267, 271, 275, 279) and plans[-1].index == 9


def test_overlapping_hop():
    plans = plan_windows(20, WindowSpec(num_frames=4, stride=2, hop=3))
    assert [plan.frames[0] for plan in plans] == [0, 3, 6, 9, 12, 13]  # the last full window ends at 18; the tail at 19
    assert plans[-2].frames[-1] == 18 and plans[-1].frames == (13, 15, 17, 19) and plans[-1].aligned_to_end
    assert len(plan_windows(19, WindowSpec(num_frames=4, stride=2, hop=3))) == 5  # 12..18 ends on the last frame: no tail


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
        assert read == frames_for_length(total, spec)
        # What a decoder that knows the length converts: the grid, and the tail window's frames.
        needed = {index for index in range(total) if frame_is_needed(index, spec) or index in read}
        assert read <= needed  # nothing a window reads is ever skipped
        full = [plan for plan in plans if not plan.aligned_to_end]
        # Unread but kept: the first span (a padded window may need it) and the frames past the last
        # full window, which a decoder cannot know are past it before the clip ends.
        tail_start = len(full) * spec.hop
        assert {index for index in needed - read if spec.span <= index < tail_start} == set()
        # Every frame lies in some window's span (unless the hop itself leaves gaps between windows).
        assert spec.hop > spec.span or all(any(plan.frames[0] <= index <= plan.frames[-1] for plan in plans) for index in range(total))


def test_bad_geometry_names_the_field():
    with pytest.raises(ValueError, match="WindowSpec.stride must be >= 1, got 0"):
        WindowSpec(8, 0)
    with pytest.raises(ValueError, match="WindowSpec.num_frames"):
        WindowSpec(0, 1)
