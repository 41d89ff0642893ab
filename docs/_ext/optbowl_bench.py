"""The ``optbowl-bench`` directive: tables of the committed benchmark results.

Reads ``bench/results/*.json`` next to the docs. pytest-benchmark files (a
``"benchmarks"`` list) become one table per file — group, benchmark, mean and minimum
time per call, and the ``extra_info`` each benchmark recorded (ratios to the streaming
floor and to the peers); other JSON files are shown as they are. With no results
committed, it says so in one sentence.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} s"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/").replace("\n", " ")


def _list_table(header: List[str], rows: List[List[str]], first_as_code: bool = False) -> List[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for r in [header] + rows:
        first = f"``{r[0]}``" if first_as_code and r[0] else r[0]
        lines.append(f"   * - {first}")
        lines += [f"     - {c}" if c else "     -" for c in r[1:]]
    return lines + [""]


def _benchmark_table(data: Dict[str, Any]) -> List[str]:
    rows = data["benchmarks"]
    extra_keys: List[str] = []
    for row in rows:
        for key in (row.get("extra_info") or {}):
            if key not in extra_keys:
                extra_keys.append(key)
    header = ["group", "benchmark", "mean", "min"] + extra_keys
    table = []
    for row in rows:
        stats = row.get("stats", {})
        extra = row.get("extra_info") or {}
        table.append(
            [row.get("group") or "", row.get("name", ""),
             _seconds(stats["mean"]) if "mean" in stats else "",
             _seconds(stats["min"]) if "min" in stats else ""]
            + [_cell(extra.get(k, "")) for k in extra_keys]
        )
    lines = _list_table(header, table, first_as_code=True)
    machine = data.get("machine_info") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw")
    when = data.get("datetime")
    about = ", ".join(x for x in (cpu,
                                  f"Python {machine.get('python_version')}"
                                  if machine.get("python_version") else None,
                                  when) if x)
    if about:
        lines = [f"Measured on {about}.", ""] + lines
    return lines


def _ratio(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, (int, float)) else "--"


def _results_table(data: Dict[str, Any]) -> List[str]:
    """``python -m optbowl bench --json`` (rows with a rule) or bench_sweep.py (rows with a
    method)."""
    rows = data["results"]
    m = data.get("machine") or {}
    if isinstance(m, dict):
        about = ", ".join(f"{k} {v}" for k, v in m.items()
                          if k in ("cpu", "machine", "logical_cpus", "cpus", "isa",
                                   "threads", "numpy", "torch"))
        lines = [f"Measured on: {about}.", ""] if about else []
    else:
        lines = []
    if rows and "rule" in rows[0]:
        paths = ["numpy", "torch-single", "torch-foreach", "torch-fused"]
        # the low-precision state rows' peers, where a file has them
        paths += [p for p in ("float-state", "bitsandbytes")
                  if any(p in (r.get("speedup") or {}) for r in rows)]
        header = ["workload", "dtype", "rule", "ms/step", "x floor"] + [f"vs {p}" for p in paths]
        table = [[r["workload"], r["dtype"], f"``{r['rule']}``", f"{r['ms_per_step']:.3f}",
                  _ratio(r["x_floor"])]
                 + [_ratio((r.get("speedup") or {}).get(p)) for p in paths] for r in rows]
        return lines + _list_table(header, table)
    header = ["method", "n", "configurations", "steps", "NumPy ms", "optbowl ms", "speed-up"]
    table = [[r["method"], str(r["n"]), str(r["configurations"]), str(r["steps"]),
              f"{r['numpy_ms']:.2f}", f"{r['optbowl_ms']:.2f}", _ratio(r["speedup"])] for r in rows]
    return lines + _list_table(header, table)


def bench_rst(results_dir: str) -> List[str]:
    files = (sorted(f for f in os.listdir(results_dir) if f.endswith(".json"))
             if os.path.isdir(results_dir) else [])
    if not files:
        return [
            "No benchmark results are committed in ``bench/results/`` yet: run "
            "``python -m optbowl bench`` (or the pytest-benchmark suite in ``bench/``) to "
            "measure on your machine.",
            "",
        ]
    lines: List[str] = []
    for name in files:
        with open(os.path.join(results_dir, name), encoding="utf-8") as fh:
            data = json.load(fh)
        lines += [name, "~" * len(name), ""]
        if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
            lines += _benchmark_table(data)
        elif isinstance(data, dict) and isinstance(data.get("results"), list):
            lines += _results_table(data)
        else:
            lines += [".. code-block:: json", ""]
            lines += ["   " + line
                      for line in json.dumps(data, indent=2, ensure_ascii=False).splitlines()]
            lines.append("")
    return lines


class OptbowlBench(SphinxDirective):
    has_content = False

    def run(self) -> List[nodes.Node]:
        results = os.path.normpath(os.path.join(self.env.srcdir, os.pardir, "bench", "results"))
        if os.path.isdir(results):
            for name in os.listdir(results):
                self.env.note_dependency(os.path.join(results, name))
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state,
                                 StringList(bench_rst(results), source="<optbowl-bench>"),
                                 container)
        return container.children


def setup(app):
    app.add_directive("optbowl-bench", OptbowlBench)
    return {"parallel_read_safe": True, "version": "1"}
