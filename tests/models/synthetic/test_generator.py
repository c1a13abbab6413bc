"""The SynthKinetics generator: deterministic, masks on the acting limbs, GT schema on disk."""

import dataclasses
import json

import numpy as np
import pytest

from staa_serve.models.synthetic import ACTIONS, render_clip, sample_clip_spec
from staa_serve.models.synthetic.__main__ import main as generate_main
from staa_serve.models.synthetic.figure import PARTS
from staa_serve.models.synthetic.generate import FIXED_FIGURE
from staa_serve.models.synthetic.scene import FIXED_BACKGROUND


def test_same_seed_same_bytes_other_seed_other_clip():
    first = render_clip(sample_clip_spec(42))
    again = render_clip(sample_clip_spec(42))
    other = render_clip(sample_clip_spec(43))
    assert first.frames.tobytes() == again.frames.tobytes() and first.masks.tobytes() == again.masks.tobytes()
    assert first.frames.tobytes() != other.frames.tobytes()


def test_any_subset_of_frames_renders_identically():
    spec = sample_clip_spec(7)
    whole = render_clip(spec)
    subset = render_clip(spec, [28, 3, 11])
    assert np.array_equal(subset.frames, whole.frames[[28, 3, 11]])


@pytest.mark.parametrize("class_id", range(len(ACTIONS)))
def test_masks_cover_the_acting_limbs_only_during_the_action(class_id):
    spec = sample_clip_spec(100 + class_id, difficulty=0.0, class_id=class_id)
    # Paint every part its own colour so each pixel says which part drew it.
    palette = {part: (40 * index + 20, 255 - 30 * index, 90) for index, part in enumerate(PARTS)}
    spec = dataclasses.replace(spec, colours=palette, background=np.zeros_like(spec.background), distractors=())
    clip = render_clip(spec)
    first, last = spec.action_frames
    acting = ACTIONS[class_id].acting_parts(spec.side)
    for index in range(spec.num_frames):
        mask, frame = clip.masks[index], clip.frames[index].astype(int)
        if not first <= index <= last:
            assert not mask.any()
            continue
        assert mask.any()
        for part in acting:  # recall: visible pixels of an acting limb are in the mask
            exact = np.abs(frame - np.array(palette[part])).sum(axis=-1) <= 3  # fully drawn in that colour
            if exact.sum() >= 20:  # a limb may be hidden behind another one
                assert mask[exact].mean() > 0.97, (ACTIONS[class_id].name, part, index)
        # precision: the mask sits on the figure (background shows only at anti-aliased edges)
        background = frame.sum(axis=-1) == 0
        assert mask[background].sum() <= 0.05 * mask.sum(), (ACTIONS[class_id].name, index)
        # the other limb group (legs when arms act, arms when legs act) stays outside the mask
        groups = ({"left_arm", "right_arm"}, {"left_leg", "right_leg"})
        for group in groups:
            if group.isdisjoint(acting):
                for part in group:
                    exact = np.abs(frame - np.array(palette[part])).sum(axis=-1) <= 3
                    if exact.sum() >= 20:
                        assert mask[exact].mean() < 0.2, (ACTIONS[class_id].name, part, index)


def test_appearance_is_drawn_independently_of_the_class():
    # The same seed with another forced class keeps background, colours, position and size.
    one, other = sample_clip_spec(5, class_id=0), sample_clip_spec(5, class_id=3)
    assert np.array_equal(one.background, other.background)
    assert one.colours == other.colours and one.hip == other.hip and one.figure_height == other.figure_height


def test_cli_writes_clip_json_and_masks(tmp_path):
    generate_main(["generate", "--seed", "3", "--count", "2", "--out", str(tmp_path)])
    names = sorted(path.stem for path in tmp_path.glob("*.mp4"))
    assert len(names) == 2
    from staa_serve.models.video import decode_clip

    for name in names:
        metadata = json.loads((tmp_path / f"{name}.json").read_text())
        assert {"label", "class_id", "fps", "num_frames", "action_frames"} <= set(metadata)
        assert metadata["label"] == ACTIONS[metadata["class_id"]].name
        masks = np.load(tmp_path / f"{name}_masks.npz")["masks"]
        decoded = decode_clip(tmp_path / f"{name}.mp4")
        assert masks.dtype == bool and masks.shape == (metadata["num_frames"], *decoded.frames.shape[1:3])
        assert decoded.num_frames == metadata["num_frames"] and decoded.fps == metadata["fps"]
        first, last = metadata["action_frames"]
        assert masks[first : last + 1].any(axis=(1, 2)).all() and not masks[:first].any()


def test_palette_zero_is_a_white_figure_on_grey_doing_the_same_action():
    plain, coloured = sample_clip_spec(11, difficulty=0.0, palette=0.0), sample_clip_spec(11, difficulty=0.0)
    assert set(plain.colours.values()) == {FIXED_FIGURE}
    assert np.abs(plain.background.reshape(-1, 3).mean(0) - FIXED_BACKGROUND).max() < 15  # grey plus faint texture
    assert set(coloured.colours.values()) != {FIXED_FIGURE}
    same = ("class_id", "side", "action_frames", "hip", "figure_height")
    assert all(getattr(plain, name) == getattr(coloured, name) for name in same)
