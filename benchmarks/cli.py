"""``staa-bench``: the benchmarks behind one command.

    staa-bench compare [--quick] ...      STAA vs gradient-based XAI (benchmarks/compare.py)
    staa-bench robustness [--quick] ...   attacks, explanation deviation, lane cost (benchmarks/robustness.py)
    staa-bench load [--sweep] ...         paced live streams: latency, throughput, drops (benchmarks/load.py)
    staa-bench soak ...                   live streams for minutes: server RSS and latency over time (benchmarks/soak.py)
    staa-bench hostile [--only NAME ...]  hostile clients: status, time and server RSS per attack (benchmarks/hostile.py)
    staa-bench gpu [--quick] ...          the GPU check: throughput, latency, streams, kernels (benchmarks/gpu.py)
"""

from __future__ import annotations

import sys

from staa import require_extra

# Every benchmark needs the [bench] extra; a base install's staa-bench says so before it tries one.
require_extra("bench", "torch", "matplotlib")

COMMANDS = {"compare": "staa_serve.benchmarks.compare", "robustness": "staa_serve.benchmarks.robustness", "load": "staa_serve.benchmarks.load",
            "soak": "staa_serve.benchmarks.soak", "hostile": "staa_serve.benchmarks.hostile", "gpu": "staa_serve.benchmarks.gpu"}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:
        from staa import package_version

        print(f"staa-bench {package_version()}")
        return
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: staa-bench {{{','.join(COMMANDS)}}} [options]  (staa-bench COMMAND --help for each)", file=sys.stderr)
        raise SystemExit(2)
    from importlib import import_module

    import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
