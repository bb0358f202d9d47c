"""Figures measured as several alternating runs, and their summaries (bench/README.md).

Every wrk figure (and every large transfer) is measured ``--runs`` times in rounds that
alternate the yardstick with fhirbin's runs (nginx, raw read, FHIR JSON read, search ..., then
again), so a slow minute of a shared machine lands on both sides of a ratio instead of on one.
A figure is reported as the median of its runs with the lowest and highest; a ratio as the
ratio of the medians with the range of the per-run ratios (run i of fhirbin over run i of the
yardstick, measured in the same round). The embedded and the scale-out configurations both
measure through :func:`alternate` and summarize through :func:`compare` / :func:`spread`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

#: One measurement of a round: a name and what runs it (one wrk run, one download ...).
Step = tuple[str, Callable[[], dict[str, Any]]]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def spread(values: list[float], digits: int = 1) -> dict[str, Any]:
    """Median (``digits`` decimals), lowest and highest of a series of runs (all runs kept)."""
    return {
        "runs": values,
        "median": round(statistics.median(values), digits),
        "min": min(values),
        "max": max(values),
    }


def alternate(
    runs: int, round_steps: Callable[[int], Sequence[Step]], log: Callable[[str], None], what: str
) -> dict[str, list[dict[str, Any]]]:
    """``runs`` rounds of the steps ``round_steps(i)`` gives (fresh tokens each round), in
    order; every step's results, by name, in round order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i in range(runs):
        steps = round_steps(i)
        log(f"{what}: run {i + 1}/{runs}: " + ", ".join(name for name, _ in steps))
        for name, measure in steps:
            out.setdefault(name, []).append(measure())
    return out


def wrk_series(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests/s and p99 of a series of wrk runs, with every run's wrk details."""
    return {
        "requests_per_s": spread([r["requests_per_s"] for r in results]),
        "p99_ms": spread([(r["latency_ms"] or {}).get("p99", 0.0) for r in results]),
        "p50_ms": spread([(r["latency_ms"] or {}).get("p50", 0.0) for r in results]),
        "wrk": results,
    }


def compare(
    results: list[dict[str, Any]], yardstick: list[dict[str, Any]], ratio_to: str
) -> dict[str, Any]:
    """fhirbin's wrk series against the yardstick's runs of the same rounds."""
    fhirbin, nginx = wrk_series(results), wrk_series(yardstick)
    return {
        "fhirbin": fhirbin,
        "nginx": nginx,
        "ratio": ratio(fhirbin["requests_per_s"]["median"], nginx["requests_per_s"]["median"]),
        "ratio_runs": [
            ratio(f["requests_per_s"], n["requests_per_s"])
            for f, n in zip(results, yardstick, strict=True)
        ],
        "ratio_to": ratio_to,
    }


def transfer(fhirbin: list[float], yardstick: list[float]) -> dict[str, Any]:
    """MiB/s of alternating large transfers: both series, the ratio of the medians and the
    per-run ratios."""
    ours, theirs = spread(fhirbin), spread(yardstick)
    return {
        "fhirbin": ours,
        "yardstick": theirs,
        "ratio": ratio(ours["median"], theirs["median"]),
        "ratio_runs": [ratio(f, y) for f, y in zip(fhirbin, yardstick, strict=True)],
    }
