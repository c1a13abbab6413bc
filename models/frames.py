"""Decode single frames sent over the wire (raw RGB24, JPEG or PNG) and check them against their header."""

from __future__ import annotations

import cv2
import numpy as np

from models.errors import InvalidInput

FRAME_FORMATS = ("rgb24", "jpeg", "png")


def decode_frame(kind: str, data: bytes, width: int, height: int, max_width: int, max_height: int) -> np.ndarray:
    """Return the frame as RGB uint8 ``[height, width, 3]``.

    ``width``/``height`` are the sender's header; for JPEG/PNG a header of 0x0 means
    "take the image's own size". Raises InvalidInput naming the field on any mismatch.
    """
    if kind not in FRAME_FORMATS:
        raise InvalidInput(f"Frame.data is not set (one of {', '.join(FRAME_FORMATS)} is required)")
    if width > max_width:
        raise InvalidInput(f"frame width {width} exceeds max_frame_width={max_width}")
    if height > max_height:
        raise InvalidInput(f"frame height {height} exceeds max_frame_height={max_height}")
    if kind == "rgb24":
        if width == 0 or height == 0:
            raise InvalidInput(f"Frame.width and Frame.height are required for rgb24 frames, got {width}x{height}")
        expected = width * height * 3
        if len(data) != expected:
            raise InvalidInput(f"Frame.rgb24 has {len(data)} bytes but header {width}x{height} needs {expected}")
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise InvalidInput(f"Frame.{kind} ({len(data)} bytes) could not be decoded as {kind.upper()}")
    decoded_h, decoded_w = image.shape[:2]
    if decoded_w > max_width or decoded_h > max_height:
        raise InvalidInput(f"frame {decoded_w}x{decoded_h} exceeds max_frame_width={max_width} / max_frame_height={max_height}")
    if (width or height) and (width, height) != (decoded_w, decoded_h):
        raise InvalidInput(f"Frame.{kind} decodes to {decoded_w}x{decoded_h} but its header says {width}x{height}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_frame(frame: np.ndarray, kind: str = "rgb24", jpeg_quality: int = 90) -> bytes:
    """RGB uint8 ``[H, W, 3]`` -> wire bytes (the client side of ``decode_frame``)."""
    if kind == "rgb24":
        return np.ascontiguousarray(frame, np.uint8).tobytes()
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if kind == "jpeg" else []
    ok, buffer = cv2.imencode(".jpg" if kind == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"could not encode frame as {kind}")
    return buffer.tobytes()
