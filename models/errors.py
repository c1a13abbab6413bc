"""Domain errors. Each is a ValueError whose message names the field, the limit and the value (a
client's value through ``staa.quoted``: short and escaped)."""


class InvalidInput(ValueError):
    """A request is malformed or exceeds a configured limit."""


class VideoDecodeError(InvalidInput):
    """Clip bytes could not be decoded into frames."""


class UnsupportedModel(ValueError):
    """The model's architecture or configuration is not one STAA Serve can explain."""
