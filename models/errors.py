"""Domain errors. Each is a ValueError whose message names the field, the limit and the value."""

from collections.abc import Sequence


class InvalidInput(ValueError):
    """A request is malformed or exceeds a configured limit."""


class VideoDecodeError(InvalidInput):
    """Clip bytes could not be decoded into frames."""


class UnsupportedModel(ValueError):
    """The model's architecture or configuration is not one STAA Serve can explain."""


QUOTE_CHARS = 64  # a client's value quoted in a status, a log line or a span: at most this many characters
QUOTE_ITEMS = 8  # and at most this many items of a list


def quoted(value) -> str:
    """A client's value as a message may quote it: escaped (``repr``: no newline or control character
    survives to forge a log line) and cut to ``QUOTE_CHARS`` characters or ``QUOTE_ITEMS`` items,
    saying how much was cut. Whatever a request holds, the quote stays short, and costs no more than
    its own length to make."""
    if not isinstance(value, (str, bytes)) and isinstance(value, Sequence):  # lists, protobuf repeated fields
        shown = ", ".join(quoted(item) if isinstance(item, (str, bytes)) else str(item)[:QUOTE_CHARS]
                          for item in value[:QUOTE_ITEMS])
        more = len(value) - QUOTE_ITEMS
        return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"
    text = value if isinstance(value, (str, bytes)) else str(value)
    more = len(text) - QUOTE_CHARS
    return repr(text[:QUOTE_CHARS]) + (f"... ({more} more characters)" if more > 0 else "")
