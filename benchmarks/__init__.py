"""Benchmarks: each writes a report (Markdown + CSV + PNG) under benchmarks/reports/."""
