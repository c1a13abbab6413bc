"""``staa-viewer``: watch a stream's explanation live in the browser (clients/viewer/app.py)."""

from staa import require_extra

require_extra("viewer", "aiohttp")
