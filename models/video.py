"""Decode video files and in-memory bytes into RGB frames, with PyAV or decord behind one function.

Frames are addressed by index only: container timestamps lie (the shared AVI has packed
B-frames and broken PTS), so callers sample by index and average fps (ARCHITECTURE §9).

Backends:
- ``pyav``: sequential decoding; works for files and bytes; the live path. Applies the
  display-matrix rotation itself so phone videos come out upright.
- ``decord``: random access by index; returns frames already rotated. Its tracker reports
  thread-safety problems, so it only ever runs on worker threads, one reader per call. Its
  seeks go by timestamp, so clips with broken timestamps are read sequentially instead.
Both produce pixel-identical frames on the shared clips (tests hold them to it).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from staa_serve.models.errors import InvalidInput, VideoDecodeError
from staa import quoted

logger = logging.getLogger(__name__)

BACKENDS = ("pyav", "decord")
# Chosen by benchmarks/decode_backends.py (see its report): PyAV decodes the sampled
# frames of a whole clip faster on this machine and handles every edge clip.
DEFAULT_BACKEND = "pyav"
_DECORD_CHUNK = 32  # frames per get_batch: bounds memory on long clips

VideoSource = str | Path | bytes


@dataclass(frozen=True)
class DecodeLimits:
    """Limits checked while decoding; each error names the field and the value."""

    max_frames: int = 10_000
    max_width: int = 4096
    max_height: int = 4096


@dataclass
class DecodedClip:
    """Frames kept from one clip.

    Attributes:
        frames: uint8 ``[K, H, W, 3]`` RGB, upright.
        indices: ``[K]`` source frame index of each kept frame.
        num_frames: frames in the whole clip (all decoded, kept or not).
        fps: average frame rate (frames / duration), used instead of timestamps.
        backend: the decoder that produced the frames.
    """

    frames: np.ndarray
    indices: np.ndarray
    num_frames: int
    fps: float
    backend: str


@dataclass(frozen=True)
class StreamInfo:
    width: int  # upright (after rotation)
    height: int
    fps: float
    declared_frames: int = 0  # what the container says the clip holds (0: it does not say, as MKV)


@dataclass(frozen=True)
class ClipEnd:
    num_frames: int  # every frame of the clip, needed or not
    declared_frames: int = 0  # StreamInfo's; more than num_frames means the clip was cut short

    @property
    def truncated(self) -> bool:
        return self.declared_frames > self.num_frames


def _as_file(source: VideoSource):
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise VideoDecodeError("clip is empty (0 bytes)")
        return io.BytesIO(bytes(source))
    path = Path(source)
    if not path.is_file():
        raise InvalidInput(f"clip path {str(path)!r} does not exist")
    return str(path)


def _check_dimensions(width: int, height: int, limits: DecodeLimits) -> None:
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"clip has no decodable video frames (size {width}x{height})")
    if width > limits.max_width:
        raise InvalidInput(f"clip frame width {width} exceeds max_frame_width={limits.max_width}")
    if height > limits.max_height:
        raise InvalidInput(f"clip frame height {height} exceeds max_frame_height={limits.max_height}")


def _check_count(count: int, limits: DecodeLimits) -> None:
    if count > limits.max_frames:
        raise InvalidInput(f"clip has more than max_clip_frames={limits.max_frames} frames")


def _rotate_upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    # PyAV reports the display matrix angle (counter-clockwise degrees); decord applies
    # the same transpose, so undoing it here makes both backends agree pixel for pixel.
    quarter_turns = (int(round(rotation / 90.0))) % 4
    return np.ascontiguousarray(np.rot90(frame, k=quarter_turns)) if quarter_turns else frame


def _iter_pyav(source, needed, limits) -> Iterator[tuple[int, np.ndarray] | StreamInfo | ClipEnd]:
    import av

    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(f"clip could not be opened as a video container: {exc}") from exc
    with container:
        if not container.streams.video:
            raise VideoDecodeError("clip has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # The codec refuses a frame above this many pixels before allocating it (a clip can switch
        # to 16000x16000 mid-stream); each frame's size is checked again before conversion to RGB.
        stream.codec_context.options = {"max_pixels": str(limits.max_width * limits.max_height)}
        count, first_size = 0, None
        try:
            for frame in container.decode(stream):
                upright_swap = int(round(frame.rotation / 90.0)) % 2 == 1
                width, height = (frame.height, frame.width) if upright_swap else (frame.width, frame.height)
                if first_size is None:
                    _check_dimensions(width, height, limits)
                    first_size = (width, height)
                    yield StreamInfo(width, height, _average_fps(stream, container), max(0, stream.frames or 0))
                elif (width, height) != first_size:
                    raise InvalidInput(f"clip frame {count} is {width}x{height} but the clip started at "
                                       f"{first_size[0]}x{first_size[1]} (frame size may not change)")
                _check_count(count + 1, limits)
                if needed is None or needed(count):
                    yield count, _rotate_upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                count += 1
        except av.error.ArgumentError as exc:  # what max_pixels raises (EINVAL)
            raise VideoDecodeError(f"clip frame {count} exceeds the frame limit (max_frame_width x max_frame_height "
                                   f"= {limits.max_width * limits.max_height} pixels) or is malformed: {exc}") from exc
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(f"clip is corrupt: decoding failed at frame {count}: {exc}") from exc
        if count == 0:
            raise VideoDecodeError("clip contains no decodable video frames")
        yield ClipEnd(count, max(0, stream.frames or 0))


def _average_fps(stream, container) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate:
        return float(rate)
    if stream.frames and container.duration:
        return stream.frames / (container.duration / 1e6)
    return 25.0  # a container with no rate at all: assume PAL, only affects reported pts


def _iter_decord(source, needed, limits) -> Iterator[tuple[int, np.ndarray] | StreamInfo | ClipEnd]:
    import decord

    try:
        reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=1)
    except (decord.DECORDError, RuntimeError, OSError) as exc:
        raise VideoDecodeError(f"clip could not be opened as a video container: {exc}") from exc
    count = len(reader)
    if count == 0:
        raise VideoDecodeError("clip contains no decodable video frames")
    _check_count(count, limits)
    height, width = reader[0].shape[:2]
    _check_dimensions(width, height, limits)
    yield StreamInfo(width, height, float(reader.get_avg_fps()))
    wanted = [index for index in range(count) if needed is None or needed(index)]
    # decord seeks by timestamp: where they are broken (the shared AVI: packed B-frames, 110 of
    # 164 invalid) a seek returns a stale frame (asking for 163 after 100 gives 100 again).
    # Contiguous reads stay correct, so such clips are read frame by frame and filtered.
    reads = wanted if _timestamps_are_sane(reader, count) else list(range(count))
    keep = set(wanted)
    for start in range(0, len(reads), _DECORD_CHUNK):
        chunk = reads[start : start + _DECORD_CHUNK]
        try:
            batch = reader.get_batch(chunk).asnumpy()  # [K, H, W, 3]
        except (decord.DECORDError, RuntimeError) as exc:
            raise VideoDecodeError(f"clip is corrupt: decoding frames {chunk[0]}..{chunk[-1]} failed: {exc}") from exc
        if batch.shape[1:3] != (height, width):
            raise InvalidInput(f"clip frames {chunk[0]}..{chunk[-1]} are {batch.shape[2]}x{batch.shape[1]} but the "
                               f"clip started at {width}x{height} (frame size may not change)")
        yield from ((index, frame) for index, frame in zip(chunk, batch) if index in keep)
    yield ClipEnd(count)


def _timestamps_are_sane(reader, count: int) -> bool:
    import decord

    try:
        starts = reader.get_frame_timestamp(list(range(count)))[:, 0]  # [F, (start, end)] -> [F]
    except (decord.DECORDError, RuntimeError):
        return False
    return bool(np.all(starts >= 0) and np.all(np.diff(starts) > 0))


def iter_frames(
    source: VideoSource,
    backend: str = DEFAULT_BACKEND,
    needed: Callable[[int], bool] | None = None,
    limits: DecodeLimits = DecodeLimits(),
) -> Iterator[tuple[int, np.ndarray] | StreamInfo | ClipEnd]:
    """Decode a clip lazily.

    Yields one ``StreamInfo`` first, then ``(index, frame)`` for every frame whose index
    ``needed`` accepts (all frames when ``needed`` is None), in increasing index order,
    then one ``ClipEnd`` with the total count. Every frame is decoded (so the count is
    exact even where the container has none, as in MKV) but only needed ones are converted.

    Raises:
        VideoDecodeError: the bytes are not a decodable video, or decoding fails midway.
        InvalidInput: a limit in ``limits`` is exceeded, or the path does not exist.
    """
    if backend in ("", "auto"):
        backend = DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise InvalidInput(f"decoder {quoted(backend)} is not one of {', '.join(BACKENDS)} or 'auto'")
    source = _as_file(source)
    return _iter_pyav(source, needed, limits) if backend == "pyav" else _iter_decord(source, needed, limits)


def decode_clip(
    source: VideoSource,
    backend: str = DEFAULT_BACKEND,
    needed: Callable[[int], bool] | None = None,
    limits: DecodeLimits = DecodeLimits(),
) -> DecodedClip:
    """Decode a whole clip into memory (see ``iter_frames`` for arguments and errors)."""
    info, end, indices, frames = None, None, [], []
    for item in iter_frames(source, backend, needed, limits):
        if isinstance(item, StreamInfo):
            info = item
        elif isinstance(item, ClipEnd):
            end = item
        else:
            indices.append(item[0])
            frames.append(item[1])
    assert info is not None and end is not None  # iter_frames yields both or raises
    stacked = np.stack(frames) if frames else np.zeros((0, info.height, info.width, 3), np.uint8)
    used = DEFAULT_BACKEND if backend in ("", "auto") else backend
    return DecodedClip(stacked, np.asarray(indices, dtype=np.int64), end.num_frames, info.fps, used)
