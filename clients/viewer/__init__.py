"""``staa-viewer``: watch a stream's explanation live in the browser (clients/viewer/app.py)."""
