"""Model side of STAA Serve: video in, model registry and adapters, STAA attribution.

Nothing in this package imports grpc; ``server/`` translates, ``models/`` decides.
"""
