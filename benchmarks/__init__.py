"""Benchmarks: each writes a report (Markdown + CSV + PNG) under benchmarks/reports/."""

from staa import require_extra

require_extra("bench", "torch", "matplotlib")
