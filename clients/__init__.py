"""Client side: Python library (sync and async), command-line client, overlay rendering."""
