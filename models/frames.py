"""Decode single frames sent over the wire (raw RGB24, JPEG or PNG) and check them against their header."""

from __future__ import annotations

import struct

import cv2
import numpy as np

from staa_serve.models.errors import InvalidInput

FRAME_FORMATS = ("rgb24", "jpeg", "png")


# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic): C0-CF but
# DHT (C4), JPG (C8) and DAC (CC). Their payload starts: precision (1 byte), height (2), width (2).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM and RSTn carry no length
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_header_size(kind: str, data: bytes) -> tuple[int, int]:
    """``(width, height)`` declared by a JPEG or PNG header, read without decoding a pixel.

    Decoders allocate the whole declared image before they notice that the data is short, so a
    few hundred bytes can claim 32000x32000 (3 GB); the declared size is checked first.
    Raises InvalidInput when the bytes are not a well-formed ``kind`` header.
    """
    if kind == "png":
        # Signature, then the IHDR chunk: length (4), "IHDR", width (4), height (4).
        if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
            raise InvalidInput(f"Frame.png ({len(data)} bytes) does not start with a PNG signature and IHDR chunk")
        return struct.unpack(">II", data[16:24])
    if not data.startswith(b"\xff\xd8"):
        raise InvalidInput(f"Frame.jpeg ({len(data)} bytes) does not start with a JPEG SOI marker")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            break
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker in _JPEG_SOF and length >= 7 and position + 9 <= len(data):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    raise InvalidInput(f"Frame.jpeg ({len(data)} bytes) has no frame header (SOF) before its image data")


def check_frame_size(width: int, height: int, max_width: int, max_height: int, what: str = "frame") -> None:
    if width > max_width:
        raise InvalidInput(f"{what} width {width} exceeds max_frame_width={max_width}")
    if height > max_height:
        raise InvalidInput(f"{what} height {height} exceeds max_frame_height={max_height}")


def _fits(width: int, height: int, max_width: int, max_height: int) -> bool:
    return width <= max_width and height <= max_height


def decode_frame(kind: str, data: bytes, width: int, height: int, max_width: int, max_height: int) -> np.ndarray:
    """Return the frame as RGB uint8 ``[height, width, 3]``.

    ``width``/``height`` are the sender's header; for JPEG/PNG a header of 0x0 means
    "take the image's own size". Every size is checked before any pixel is allocated.
    Raises InvalidInput naming the field on any mismatch, limit or decoder error.
    """
    if kind not in FRAME_FORMATS:
        raise InvalidInput(f"Frame.data is not set (one of {', '.join(FRAME_FORMATS)} is required)")
    check_frame_size(width, height, max_width, max_height)
    if kind == "rgb24":
        if width == 0 or height == 0:
            raise InvalidInput(f"Frame.width and Frame.height are required for rgb24 frames, got {width}x{height}")
        expected = width * height * 3
        if len(data) != expected:
            raise InvalidInput(f"Frame.rgb24 has {len(data)} bytes but header {width}x{height} needs {expected}")
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)
    declared_w, declared_h = image_header_size(kind, data)
    if declared_w == 0 or declared_h == 0:
        raise InvalidInput(f"Frame.{kind} declares an empty image ({declared_w}x{declared_h})")
    # An EXIF orientation may turn the image a quarter turn when decoded: either order must fit.
    if not (_fits(declared_w, declared_h, max_width, max_height) or _fits(declared_h, declared_w, max_width, max_height)):
        check_frame_size(declared_w, declared_h, max_width, max_height, f"Frame.{kind} declared")
    if (width or height) and {(width, height), (height, width)}.isdisjoint({(declared_w, declared_h)}):
        raise InvalidInput(f"Frame.{kind} declares {declared_w}x{declared_h} but Frame.width/height say {width}x{height}")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:  # OpenCV's own limits and asserts: still the client's bytes
        raise InvalidInput(f"Frame.{kind} ({len(data)} bytes) could not be decoded: {str(error).strip()[-120:]}") from None
    if image is None:
        raise InvalidInput(f"Frame.{kind} ({len(data)} bytes) could not be decoded as {kind.upper()}")
    decoded_h, decoded_w = image.shape[:2]
    check_frame_size(decoded_w, decoded_h, max_width, max_height)
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
