"""Writing a run's results: JSON, a Markdown table, a PNG chart of the ratios, latest.md; and
``--combine``: the median of several full runs against the targets (bench/README.md)::

    .venv/bin/python bench/report.py --combine a.json b.json c.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import scrape

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


def _size(size: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size / MIB:.1f} MiB"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    # Three decimals: 0.698 must not read as a met 0.70 target.
    return "n/a" if value is None else f"{value:.3f}"


def _latency(result: dict[str, Any]) -> str:
    latency = result.get("latency_ms")
    if not latency:
        return "n/a"
    return f"{latency['p50']:.2f} / {latency['p99']:.2f} ms"


def _bound(target: dict[str, Any]) -> str:
    """``≥ 0.25``, ``p99 < 15 ms``, ``< 64 MiB``."""
    op, bound, key = ("≥" if target["op"] == ">=" else "<"), target["target"], target["key"]
    if key.endswith("_ms"):
        return f"p99 {op} {bound:g} ms"
    return f"{op} {bound:g} MiB" if key.endswith("_mib") else f"{op} {bound:g}"


MARK = {True: "✅", False: "❌", None: "n/a"}


def _target(results: dict[str, Any], key: str) -> str:
    for target in results["targets"]:
        if target["key"] == key:
            mark = {True: "✅ met", False: "❌ missed", None: "n/a"}[target["met"]]
            issue = target.get("issue")
            where = f" (issue {issue})" if issue and issue[0].isdigit() else ""
            return f"{_bound(target)}{where} {mark}"
    return "-"


def file_stem(started_utc: str, commit: str | None) -> str:
    """``20250101T120000Z-abc1234``: UTC start of the run and HEAD's short commit."""
    stamp = started_utc.replace("+00:00", "Z").replace("-", "").replace(":", "")
    return f"{stamp}-{(commit or 'nocommit')[:7]}"


def _series(result: dict[str, Any]) -> dict[str, Any]:
    """A wrk figure as a series of runs; a schema-2 result (one run) as a series of one."""
    if "wrk" in result:
        return result
    latency = result.get("latency_ms") or {}

    def one(value: float | None) -> dict[str, Any]:
        return {"median": value, "min": value, "max": value, "runs": [value]}

    return {
        "requests_per_s": one(result["requests_per_s"]),
        "p50_ms": one(latency.get("p50")),
        "p99_ms": one(latency.get("p99")),
    }


def _transfer(result: dict[str, Any]) -> dict[str, Any]:
    """MiB/s of large transfers as median/min/max (schema 2 stored median and runs only)."""
    runs = result.get("runs") or result.get("runs_mib_s") or []
    median = result.get("median", result.get("median_mib_s"))
    return {"median": median, "min": min(runs, default=median), "max": max(runs, default=median)}


def _row_ratio(row: dict[str, Any]) -> str:
    runs = row.get("ratio_runs")
    return f"{_ratio(row['ratio'])} ({_ratios(runs)})" if runs else _ratio(row["ratio"])


#: The small-read figures, in the order of the table.
SMALL_READS = (
    ("small_raw", "Small raw read, 1 KiB, authenticated", "small_raw"),
    ("fhir_json_read", "FHIR JSON read, 1 KiB (`Accept: application/fhir+json`)", "fhir_json_read"),
    ("search_id", "Search `GET /Binary?_id=`, 1 KiB Binary", "search_id"),
    ("search_post", "Search `POST /Binary/_search` (form `_id=`)", None),
    ("vread", "vread `GET /Binary/[id]/_history/1`, 1 KiB", None),
)


def _embedded(results: dict[str, Any], large: str, medium: str, piece: str) -> list[str]:
    """The embedded configuration's table (SQLite + a folder)."""
    m = results["measurements"]
    runs = results["config"]["runs"]
    ngx = _series(m["small_raw"]["nginx"])
    heading = ["**Embedded** (SQLite + a local folder):", ""] if results.get("scaleout") else []
    how = (
        [
            f"Median (lowest-highest) of {runs} runs each; the wrk runs alternate nginx and "
            "every small-read figure, round after round, and the downloads nginx and fhirbin; "
            "ratio: ratio of the medians (range of the per-run ratios). Targets: issue 11 "
            "(small reads, downloads) and issue 5 (upload, memory).",
            "",
        ]
        if results.get("schema", 0) >= 3
        else []
    )
    lines = [
        "",
        *heading,
        *how,
        "| Measurement | fhirbin | yardstick | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label, target in SMALL_READS:
        if key not in m:
            continue
        fb = _series(m[key]["fhirbin"])
        lines.append(
            f"| {label}: req/s | {_spread(fb['requests_per_s'])} | nginx 1 KiB "
            f"{_spread(ngx['requests_per_s'])} | {_row_ratio(m[key])} | "
            f"{_target(results, f'{target}_ratio') if target else '-'} |"
        )
        p99_target = f"{key}_p99_ms"
        lines.append(
            f"| ↳ latency p50 / p99, ms | {_num(fb['p50_ms']['median'], 2)} / "
            f"{_spread(fb['p99_ms'], 2)} | nginx {_num(ngx['p50_ms']['median'], 2)} / "
            f"{_spread(ngx['p99_ms'], 2)} | | {_target(results, p99_target)} |"
        )
    if "token_endpoint" in m:
        token = m["token_endpoint"]["fhirbin"]
        lines.append(
            f"| Token endpoint, client_credentials: tokens/s (p50 / p99) | "
            f"{_num(token['requests_per_s'])} ({_latency(token)}) | | | - |"
        )
    for key, target in (("download_small", "download_small_ratio"), ("download", None)):
        if key not in m:
            continue
        down = m[key]
        size = _size(down["size"]) if "size" in down else large
        lines.append(
            f"| Download {size}, native: MiB/s | {_spread(_transfer(down['fhirbin']))} | "
            f"nginx {_spread(_transfer(down['nginx']))} | {_row_ratio(down)} | "
            f"{_target(results, target or 'download_ratio')} |"
        )
    down = m["download"]
    lines.append(
        f"| ↳ server peak RSS growth ({large}) | {down['rss']['growth_mib']:g} MiB | | | "
        f"{_target(results, 'download_rss_growth_mib')} |"
    )
    up = m["upload"]
    lines += [
        f"| Upload {large}, raw `POST /Binary`: MiB/s | {_spread(_transfer(up['fhirbin']))} | "
        f"`cp` + fsync {_spread(_transfer(up['copy']))} | {_ratio(up['ratio'])} | "
        f"{_target(results, 'upload_ratio')} |",
        f"| ↳ server peak RSS growth | {up['rss']['growth_mib']:g} MiB | | | "
        f"{_target(results, 'upload_rss_growth_mib')} |",
    ]
    fj = m["fhir_json_large"]
    lines += [
        f"| FHIR JSON (base64) read, {medium}: content MiB/s (wire) | "
        f"{_num(fj['fhirbin']['median_mib_s'])} ({_num(fj['fhirbin_wire']['median_mib_s'])}) | "
        f"nginx raw {_num(fj['nginx_raw']['median_mib_s'])} | {_ratio(fj['ratio'])} | - |",
        f"| ↳ server peak RSS growth | {fj['rss']['growth_mib']:g} MiB | | | "
        f"{_target(results, 'fhir_json_rss_growth_mib')} |",
    ]
    rng = m["range"]
    fb_rng, ngx_rng = rng["fhirbin"], rng["nginx"]
    flag = "" if rng["range_supported"] else f" ⚠ status {fb_rng['probe']['status']}, no Range"
    lines.append(
        f"| Range reads, {piece} at random offsets of {large}: req/s | "
        f"{_num(fb_rng['requests_per_s'])}{flag} | nginx {_num(ngx_rng['requests_per_s'])} | "
        f"{_ratio(rng['ratio'])} | - |"
    )
    if m.get("metrics"):
        lines += scrape.markdown(m["metrics"], m["metrics"]["raw"])
    return lines


def _spread(result: dict[str, Any], digits: int = 0) -> str:
    """``median (min-max)`` of a series of runs."""
    low, high = _num(result["min"], digits), _num(result["max"], digits)
    if low == high:
        return _num(result["median"], digits)
    return f"{_num(result['median'], digits)} ({low}-{high})"


def _ratios(values: list[float | None]) -> str:
    shown = [v for v in values if v is not None]
    return f"{min(shown):.3f}-{max(shown):.3f}" if shown else "n/a"


def _scaleout(results: dict[str, Any]) -> list[str]:
    """The scale-out configuration's table (PostgreSQL + S3 on SeaweedFS)."""
    so = results["scaleout"]
    m, setup = so["measurements"], so["setup"]
    size = _size(setup["size"])
    runs = results["config"]["runs"]
    lines = [
        "",
        f"**Scale-out** (PostgreSQL + S3 on a private SeaweedFS, {setup.get('weed', '')}): "
        f"median (lowest-highest) of {runs} runs each; wrk runs alternate nginx, raw read, "
        "search; ratio column: ratio of the medians (range of the per-run ratios).",
        "",
        "| Measurement | fhirbin | yardstick | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label, target in (
        ("small_raw", "Small raw read, 1 KiB, authenticated: req/s", "scaleout_small_raw_ratio"),
        ("search_id", "Search `GET /Binary?_id=`, 1 KiB Binary: req/s", "scaleout_search_id_ratio"),
    ):
        row = m[key]
        lines += [
            f"| {label} | {_spread(row['fhirbin']['requests_per_s'])} | nginx 1 KiB "
            f"{_spread(row['nginx']['requests_per_s'])} | {_ratio(row['ratio'])} "
            f"({_ratios(row['ratio_runs'])}) | {_target(results, target)} |",
            f"| ↳ latency p99, ms | {_spread(row['fhirbin']['p99_ms'], 1)} | "
            f"nginx {_spread(row['nginx']['p99_ms'], 1)} | | |",
        ]
    for key, label, yardstick in (
        ("download", f"Download {size}, native: MiB/s", "direct S3 GET"),
        ("upload", f"Upload {size}, raw `POST /Binary`: MiB/s", "direct S3 multipart"),
    ):
        row = m[key]
        lines += [
            f"| {label} | {_spread(row['fhirbin'])} | {yardstick} {_spread(row['direct'])} | "
            f"{_ratio(row['ratio'])} ({_ratios(row['ratio_runs'])}) | "
            f"{_target(results, f'scaleout_{key}_ratio')} |",
            f"| ↳ server peak RSS growth (worst; all runs) | {row['rss']['growth_mib']:g} MiB; "
            f"{', '.join(f'{v:g}' for v in row['rss_runs_mib'])} | | | "
            f"{_target(results, f'scaleout_{key}_rss_growth_mib')} |",
        ]
    return lines


def markdown(results: dict[str, Any], chart_name: str | None = None) -> str:
    m = results["measurements"]
    c = results["config"]
    v = results["versions"]
    mach = results["machine"]
    load = results["load"]["before"]
    during = results["load"].get("during", {})
    large, medium, piece = _size(c["size"]), _size(c["json_size"]), _size(c["slice"])
    runs = c["runs"]
    lines = [
        f"### fhirbin vs nginx: {results['started_utc'].replace('+00:00', ' UTC')}, "
        f"commit `{(results.get('commit') or 'unknown')[:7]}`",
        "",
        f"{mach['cores']} cores ({mach['cpu_model']}), {mach['memory_gib']} GiB RAM, "
        f"{mach['os']}, Linux {mach['kernel']}; Python {v['python']}, fhirbin {v['fhirbin']}, "
        f"granian {v['granian']}, Starlette {v['starlette']}, nginx {v['nginx']}, "
        f"wrk {v['wrk']}. fhirbin {c['fhirbin_workers']} workers "
        f"({c['fhirbin_processes']} processes), nginx {c['nginx_workers']} workers; "
        f"wrk {c['wrk_threads']} threads, {c['wrk_connections']} connections, "
        f"{c['duration_s']:g} s per run after {c['warmup_s']:g} s of warm-up; large "
        f"transfers: median of {runs} runs, one request at a time (downloads after one "
        f"unmeasured warm-up download each). Other processes used "
        f"{during.get('other_cpu_percent', 'n/a')}% of the CPUs during the run (load average "
        f"{load['loadavg'][0]} before it)."
        + (f" Label: {results['label']}." if results.get("label") else ""),
    ]
    if m:
        lines += _embedded(results, large, medium, piece)
    if results.get("scaleout"):
        lines += _scaleout(results)
    profiles = results.get("profiles") or {}
    if results.get("profile"):  # schema 2: the small raw read's only
        profiles = {"small_raw": {**results["profile"], "title": "the small raw read"}}
    for profile in profiles.values():
        top = ", ".join(f"`{name}` {share:.0%}" for name, share in profile["top_self"][:3])
        lines += [
            "",
            f"Profile of {profile['title']} (py-spy on the workers, an extra unmeasured run): "
            f"[{profile['summary']}]({profile['summary']}); highest self time: {top}.",
        ]
    if results["notes"]:
        lines += ["", "Notes:", ""]
        lines += [f"- {note}" for note in results["notes"]]
    if chart_name:
        lines += ["", f"![ratios to the yardsticks]({chart_name})"]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = results["measurements"]
    large = _size(results["config"]["size"])
    bars: list[tuple[str, float | None, float | None]] = []
    targets = {t["key"]: t["target"] for t in results["targets"]}
    if m:
        for key, label, target_key in SMALL_READS:
            if key in m:
                name = label.split(",")[0].split(" (")[0].replace("`", "")
                bound = targets.get(f"{target_key}_ratio") if target_key else None
                bars.append((f"{name}\n(req/s vs nginx 1 KiB)", m[key]["ratio"], bound))
        if "download_small" in m:
            size = _size(m["download_small"]["size"])
            bars.append(
                (
                    f"download {size}\n(MiB/s vs nginx)",
                    m["download_small"]["ratio"],
                    targets.get("download_small_ratio"),
                )
            )
        bars += [
            (
                f"download {large}\n(MiB/s vs nginx)",
                m["download"]["ratio"],
                targets.get("download_ratio"),
            ),
            (f"upload {large}\n(MiB/s vs cp + fsync)", m["upload"]["ratio"], 0.50),
            ("FHIR JSON read\n(MiB/s vs nginx raw)", m["fhir_json_large"]["ratio"], None),
            ("Range 1 MiB slices\n(req/s vs nginx)", m["range"]["ratio"], None),
        ]
    if results.get("scaleout"):
        so = results["scaleout"]["measurements"]
        so_size = _size(results["scaleout"]["setup"]["size"])
        bars += [
            ("scale-out: small raw read\n(req/s vs nginx)", so["small_raw"]["ratio"], 0.15),
            ("scale-out: search _id\n(req/s vs nginx raw)", so["search_id"]["ratio"], 0.05),
            (f"scale-out: download {so_size}\n(vs direct S3 GET)", so["download"]["ratio"], 0.60),
            (f"scale-out: upload {so_size}\n(vs direct S3 multipart)", so["upload"]["ratio"], 0.50),
        ]
    fig, ax = plt.subplots(figsize=(9, 2.0 + 0.45 * len(bars)))
    labels = [b[0] for b in bars]
    values = [b[1] or 0.0 for b in bars]
    colors = []
    for _label, value, target in bars:
        if value is None:
            colors.append("#bbbbbb")
        elif target is None:
            colors.append("#4c72b0")
        else:
            colors.append("#55a868" if value >= target else "#c44e52")
    y = list(range(len(bars)))
    ax.barh(y, values, color=colors)
    for i, (_label, value, target) in enumerate(bars):
        text = _ratio(value)
        ax.text((value or 0) + 0.01, i, text, va="center", fontsize=9)
        if target is not None:
            ax.plot([target, target], [i - 0.42, i + 0.42], color="black", linewidth=2)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="#888888", linestyle=":", linewidth=1)
    ax.set_xlim(0, max(1.1, max(values) * 1.15))
    ax.set_xlabel("ratio (fhirbin / yardstick; black tick = target)")
    commit = (results.get("commit") or "unknown")[:7]
    ax.set_title(f"fhirbin vs yardsticks, {results['started_utc'][:16]} UTC, {commit}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results: dict[str, Any], results_dir: Path) -> dict[str, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = file_stem(results["started_utc"], results.get("commit"))
    paths = {
        "json": results_dir / f"{stem}.json",
        "markdown": results_dir / f"{stem}.md",
        "png": results_dir / f"{stem}.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    chart(results, paths["png"])
    paths["markdown"].write_text(markdown(results, chart_name=paths["png"].name))
    # latest.md is the README's table: only a run with the embedded configuration replaces it.
    if results.get("measurements"):
        latest = results_dir / "latest.md"
        shutil.copyfile(paths["markdown"], latest)
        paths["latest"] = latest
    return paths


# --- several full runs -----------------------------------------------------------------------

#: Figures shown without a target in --combine: (label, path in the measurements).
UNTARGETED = (
    ("POST /Binary/_search, req/s vs nginx 1 KiB", ("search_post", "ratio")),
    ("vread, req/s vs nginx 1 KiB", ("vread", "ratio")),
    ("FHIR JSON p99 at 64 connections, ms", ("fhir_json_read", "fhirbin", "p99_ms", "median")),
)


def dig(m: dict[str, Any], path: Sequence[str]) -> float | None:
    """The number at ``path`` in nested dicts, None when a key is missing."""
    value: Any = m
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def _shown(value: float | None, key: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if key.endswith("_ratio") or key == "ratio" else f"{value:.2f}"


def combine(runs: list[dict[str, Any]]) -> str:
    """A Markdown table of several full runs: per figure, each run's value with ✅/❌ against
    its target, the median of the runs, and whether every run met the target (issue 11: a
    target holds when it is met in three consecutive full runs)."""
    names = [
        f"`{r['started_utc'][:16].replace('T', ' ')}` {(r.get('commit') or '')[:7]}" for r in runs
    ]
    lines = [
        f"Median of {len(runs)} full runs (`bench/report.py --combine`); each run's value is "
        "its own ratio of the medians of its alternating runs.",
        "",
        "| Figure | target | " + " | ".join(names) + " | median | held in every run |",
        "|---|---|" + "---:|" * len(runs) + "---:|---|",
    ]
    keys = list(dict.fromkeys(t["key"] for r in runs for t in r["targets"]))
    for key in keys:
        found = [next((t for t in r["targets"] if t["key"] == key), None) for r in runs]
        first = next(t for t in found if t is not None)
        values = [t["value"] if t else None for t in found]
        cells = [
            f"{_shown(v, key)} {MARK[t['met'] if t else None]}"
            for v, t in zip(values, found, strict=True)
        ]
        known = [v for v in values if v is not None]
        median = statistics.median(known) if known else None
        held = all(t is not None and t["met"] for t in found)
        issue = first.get("issue")
        where = f" (issue {issue})" if issue and issue[0].isdigit() else ""
        lines.append(
            f"| {first['what']} | {_bound(first)}{where} | "
            + " | ".join(cells)
            + f" | {_shown(median, key)} | {'✅ yes' if held else '❌ no'} |"
        )
    for label, path in UNTARGETED:
        values = [dig(r.get("measurements") or {}, path) for r in runs]
        known = [v for v in values if v is not None]
        if not known:
            continue
        key = path[-1]
        median = statistics.median(known)
        lines.append(
            f"| {label} | - | "
            + " | ".join(_shown(v, key) for v in values)
            + f" | {_shown(median, key)} | |"
        )
    settings = ("size", "download_size", "duration_s", "runs", "wrk_connections", "fhirbin_workers")
    differ = [k for k in settings if len({str(r["config"].get(k)) for r in runs}) > 1]
    if differ:
        lines += ["", f"⚠ The runs differ in {', '.join(differ)}: not the same measurement."]
    busy = [f"{r['load'].get('during', {}).get('other_cpu_percent', 'n/a')}%" for r in runs]
    lines += ["", f"Other processes' share of the CPUs during each run: {', '.join(busy)}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Combine bench results (bench/README.md).")
    parser.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        required=True,
        metavar="RESULTS.json",
        help="results of consecutive full runs (bench/results/*.json), oldest first",
    )
    ns = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in ns.combine]
    runs.sort(key=lambda r: r["started_utc"])
    print(combine(runs), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
