"""The benchmark: a zoo spec (YAML) -> models, verdicts and mitigation reports, cached and resumable -> tables, plots.

Entry points: `load_spec`, `run_bench`, `write_report` (the `ban bench` command wraps them).
"""

from ban.bench.report import write_report
from ban.bench.runner import RunSummary, run_bench
from ban.bench.spec import BenchSpec, load_spec, parse_spec

__all__ = ["BenchSpec", "RunSummary", "load_spec", "parse_spec", "run_bench", "write_report"]
