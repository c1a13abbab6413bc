"""gRPC side of STAA Serve: a thin servicer over plain modules (sessions, engine, conversion)."""
