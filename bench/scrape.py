"""fhirbin's own metrics after a bench run: ``GET /metrics`` scraped before the server stops.

The exposition is cumulative over the whole embedded run (warm-ups, probes and the profiled
runs included), summed over every worker. :func:`summarize` keeps the series worth reading next
to the wrk figures: requests by interaction and status, bytes sent by interaction, dependency
errors, and for the interactions the bench loads with wrk (read, vread, search-type) the
duration histogram's counts per bucket with quantiles estimated the way Prometheus'
``histogram_quantile`` does (linear within the bucket that holds the rank).
"""

from __future__ import annotations

import math
import re
from typing import Any

#: Interactions whose duration histogram is summarized (the ones wrk drives).
TIMED = ("read", "vread", "search-type")
QUANTILES = (0.5, 0.9, 0.99)

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        found = _SAMPLE.match(line.strip())
        if line.startswith("#") or not found:
            continue
        labels = dict(_LABEL.findall(found.group(2) or ""))
        out.append((found.group(1), labels, float(found.group(3))))
    return out


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """``histogram_quantile(q, ...)`` over cumulative (upper bound, count) buckets, +Inf last."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bound: its value is all that is known
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return None


def summarize(text: str) -> dict[str, Any]:
    """The series the bench report shows (see the module docstring)."""
    samples = parse(text)
    requests: dict[str, dict[str, int]] = {}
    sent: dict[str, int] = {}
    dependency_errors: dict[str, int] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    for name, labels, value in samples:
        interaction = labels.get("interaction", "")
        if name == "fhirbin_requests_total":
            requests.setdefault(interaction, {})[labels["status"]] = int(value)
        elif name == "fhirbin_sent_bytes_total":
            sent[interaction] = int(value)
        elif name == "fhirbin_dependency_errors_total":
            dependency_errors[labels["dependency"]] = int(value)
        elif name == "fhirbin_request_duration_seconds_bucket" and interaction in TIMED:
            buckets.setdefault(interaction, []).append((float(labels["le"]), value))
        elif name == "fhirbin_request_duration_seconds_sum" and interaction in TIMED:
            sums[interaction] = value
    durations: dict[str, Any] = {}
    for interaction, series in sorted(buckets.items()):
        series.sort()
        count = series[-1][1] if series else 0.0
        durations[interaction] = {
            "count": int(count),
            "mean_ms": round(sums.get(interaction, 0.0) / count * 1000, 3) if count else None,
            "quantiles_ms": {f"p{round(q * 100)}": _ms(quantile(q, series)) for q in QUANTILES},
            "buckets": [["+Inf" if math.isinf(le) else le, int(n)] for le, n in series],
        }
    return {
        "requests": {k: dict(sorted(v.items())) for k, v in sorted(requests.items())},
        "sent_bytes": dict(sorted(sent.items())),
        "dependency_errors": dict(sorted(dependency_errors.items())),
        "durations": durations,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def markdown(summary: dict[str, Any], raw_name: str) -> list[str]:
    """The report's section on the scraped metrics."""
    lines = [
        "",
        f"fhirbin's own metrics at the end of the embedded run (`GET /metrics`, every worker, "
        f"cumulative: warm-ups, probes and profiled runs included; raw exposition: "
        f"[{raw_name}]({raw_name})):",
        "",
        "| Interaction | requests by status | bytes out | duration p50 / p90 / p99 (estimated "
        "from the histogram) | mean |",
        "|---|---|---:|---|---:|",
    ]
    durations = summary["durations"]
    for interaction, statuses in summary["requests"].items():
        counts = ", ".join(f"{status}: {n:,}" for status, n in statuses.items())
        timed = durations.get(interaction)
        if timed:
            q = timed["quantiles_ms"]
            shown = " / ".join("n/a" if q[k] is None else f"{q[k]:.2f}" for k in q) + " ms"
            mean = f"{timed['mean_ms']:.2f} ms" if timed["mean_ms"] is not None else "n/a"
        else:
            shown, mean = "", ""
        sent = summary["sent_bytes"].get(interaction, 0)
        lines.append(f"| {interaction} | {counts} | {sent:,} | {shown} | {mean} |")
    errors = summary["dependency_errors"]
    lines += [
        "",
        "Dependency errors: "
        + (", ".join(f"{k} {v:,}" for k, v in errors.items()) if errors else "none")
        + ".",
    ]
    return lines
