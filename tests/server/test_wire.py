"""server/wire.py's walk of a request's wire format before it is parsed: counts past their limits are
refused without building the message, bytes that are not protobuf are refused, and a clip kept apart
from the parse means what the whole message would."""

import pytest

from staa_serve.models.errors import InvalidInput
from staa_serve.server.wire import MAX_FIELDS, parse_counted
from staa.v1 import explainer_pb2 as pb

FRAMES = {"staa.v1.RawFrames.frames": (5, "max_clip_frames=5")}


def test_a_counted_field_past_its_limit_is_refused_before_parsing():
    frames = pb.RawFrames(frames=[pb.Frame(width=1)] * 6)
    with pytest.raises(InvalidInput, match="RawFrames.frames has more than 5 entries; max_clip_frames=5"):
        parse_counted(pb.ClipRequest(frames=frames).SerializeToString(), pb.ClipRequest, FRAMES)
    frames = pb.RawFrames(frames=[pb.Frame(width=1)] * 5)
    assert len(parse_counted(pb.ClipRequest(frames=frames).SerializeToString(), pb.ClipRequest, FRAMES).frames.frames) == 5


def test_a_message_past_max_fields_is_refused_nested_or_not():
    repeated_model = pb.ClipRequest(model="m").SerializeToString() * (MAX_FIELDS + 1)
    with pytest.raises(InvalidInput, match=f"staa.v1.ClipRequest has more than {MAX_FIELDS} fields"):
        parse_counted(repeated_model, pb.ClipRequest, {})
    one_frame_many_fields = pb.Frame(width=1).SerializeToString() * (MAX_FIELDS + 1)
    raw_frames = length_delimited(1, one_frame_many_fields)  # RawFrames.frames = 1
    with pytest.raises(InvalidInput, match=f"staa.v1.Frame has more than {MAX_FIELDS} fields"):
        parse_counted(length_delimited(2, raw_frames), pb.ClipRequest, FRAMES)  # ClipRequest.frames = 2
    fine = length_delimited(2, length_delimited(1, pb.Frame(width=1).SerializeToString() * MAX_FIELDS))
    assert parse_counted(fine, pb.ClipRequest, FRAMES).frames.frames[0].width == 1  # repeats merge: last wins


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field on the wire: tag, varint length, payload."""
    header, length = bytes([number << 3 | 2]), len(payload)
    while True:
        header += bytes([length & 0x7F | (0x80 if length > 0x7F else 0)])
        length >>= 7
        if not length:
            return header + payload


@pytest.mark.parametrize("data", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", b"\x08\x80", b"\x0a\x05ab"])
def test_bytes_that_are_not_protobuf_are_invalid_input(data):
    with pytest.raises(InvalidInput, match="not a valid staa.v1.ClipRequest protobuf message"):
        parse_counted(data, pb.ClipRequest, {})


def test_a_clip_kept_apart_means_what_the_whole_message_means():
    whole = pb.ClipRequest(clip=b"\x00video", model="m", decoder="pyav", staa=pb.StaaOptions(top_k=3))
    message, clip = parse_counted(whole.SerializeToString(), pb.ClipRequest, {}, "clip")
    assert bytes(clip) == whole.clip and message.model == "m" and message.staa.top_k == 3
    assert message.WhichOneof("source") is None  # the clip travels beside it, not in it
    frames_last = pb.ClipRequest(clip=b"abc").SerializeToString() + pb.ClipRequest(frames=pb.RawFrames(fps=2)).SerializeToString()
    message, clip = parse_counted(frames_last, pb.ClipRequest, {}, "clip")
    assert clip is None and message.WhichOneof("source") == "frames"  # the later field of the oneof wins
    clip_last = pb.ClipRequest(frames=pb.RawFrames(fps=2)).SerializeToString() + pb.ClipRequest(clip=b"zz").SerializeToString()
    message, clip = parse_counted(clip_last, pb.ClipRequest, {}, "clip")
    assert bytes(clip) == b"zz" and message.WhichOneof("source") is None
    assert parse_counted(pb.ClipRequest(model="x").SerializeToString(), pb.ClipRequest, {}, "clip")[1] is None
