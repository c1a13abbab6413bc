"""Decoding: both backends, pixel-identical, by index; the edge clips; clean errors."""

import numpy as np
import pytest

from staa_serve.models.errors import InvalidInput, VideoDecodeError
from staa_serve.models.video import DecodeLimits, decode_clip
from tests.conftest import SHARED_CLIPS, SHARED_FRAME_COUNTS, clip_path


@pytest.mark.parametrize("name", SHARED_CLIPS)
def test_backends_decode_every_frame_pixel_identical(name):
    pyav = decode_clip(clip_path(name), "pyav")
    decord = decode_clip(clip_path(name), "decord")
    assert pyav.num_frames == decord.num_frames == SHARED_FRAME_COUNTS[name]
    assert pyav.frames.shape == decord.frames.shape
    assert np.array_equal(pyav.frames, decord.frames)
    assert pyav.fps == pytest.approx(decord.fps, rel=1e-3)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_bytes_and_path_give_the_same_frames(backend):
    path = clip_path("ucf101_apply_eye_makeup.avi")
    from_path = decode_clip(path, backend, needed=lambda index: index % 7 == 0)
    from_bytes = decode_clip(path.read_bytes(), backend, needed=lambda index: index % 7 == 0)
    assert from_path.indices.tolist() == list(range(0, 164, 7))
    assert np.array_equal(from_path.frames, from_bytes.frames)
    assert from_bytes.num_frames == 164  # every frame counted, only needed ones kept


def test_avi_with_broken_timestamps_is_sampled_by_index():
    # PyAV reports this AVI's PTS out of order; index access must still match sequential order.
    clip = decode_clip(clip_path("ucf101_apply_eye_makeup.avi"), "pyav")
    sparse = decode_clip(clip_path("ucf101_apply_eye_makeup.avi"), "decord", needed=lambda index: index in (3, 100, 163))
    assert np.array_equal(sparse.frames, clip.frames[[3, 100, 163]])


def test_mkv_without_container_frame_count_is_counted_by_decoding():
    assert decode_clip(clip_path("flipping_pancake.mkv"), "pyav", needed=lambda index: False).num_frames == 310


def test_rotated_phone_video_comes_out_upright_and_identical():
    pyav = decode_clip(clip_path("edge/video_90.mov"), "pyav")
    decord = decode_clip(clip_path("edge/video_90.mov"), "decord")
    assert pyav.frames.shape == (3, 568, 320, 3)  # stored 568x320 landscape, displayed portrait
    assert np.array_equal(pyav.frames, decord.frames)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_corrupted_clip_raises_decode_error(backend):
    with pytest.raises(VideoDecodeError, match="corrupt"):
        decode_clip(clip_path("edge/corrupted.mp4"), backend)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"not a video at all" * 50])
def test_garbage_bytes_raise_decode_error(backend, data):
    with pytest.raises(VideoDecodeError):
        decode_clip(data, backend)


def test_truncated_container_raises_decode_error_or_decodes_a_prefix():
    data = clip_path("arm_wrestling.mp4").read_bytes()
    with pytest.raises(VideoDecodeError):
        decode_clip(data[: len(data) // 3], "pyav")  # moov atom at the end: nothing to index


def test_limits_name_the_field():
    with pytest.raises(InvalidInput, match="max_clip_frames=50"):
        decode_clip(clip_path("ucf101_apply_eye_makeup.avi"), "pyav", limits=DecodeLimits(max_frames=50))
    with pytest.raises(InvalidInput, match="max_frame_width=100"):
        decode_clip(clip_path("ucf101_apply_eye_makeup.avi"), "decord", limits=DecodeLimits(max_width=100))


def test_unknown_backend_is_rejected():
    with pytest.raises(InvalidInput, match="decoder 'ffmpeg'"):
        decode_clip(clip_path("edge/unordered.mov"), "ffmpeg")


def write_clip(path, codec: str, frames) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_webm_vp9_decodes_identically_with_both_backends(tmp_path):
    frames = np.zeros((12, 48, 64, 3), np.uint8)
    for index in range(12):
        frames[index, :, index * 4 : index * 4 + 8] = 255  # a bar moving right
    path = tmp_path / "moving_bar.webm"
    write_clip(path, "libvpx-vp9", frames)
    pyav = decode_clip(path.read_bytes(), "pyav")
    decord = decode_clip(path, "decord")
    assert pyav.num_frames == decord.num_frames == 12
    assert np.array_equal(pyav.frames, decord.frames)
    assert pyav.frames[5, 24, 22:28, 0].min() > 200  # the bar is where it was drawn (lossy codec)
