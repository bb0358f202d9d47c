"""Writing a run's results: JSON, a Markdown table, a PNG chart of the ratios, latest.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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


def _target(results: dict[str, Any], key: str) -> str:
    for target in results["targets"]:
        if target["key"] == key:
            op = "≥" if target["op"] == ">=" else "<"
            bound = target["target"]
            shown = f"{bound:g} MiB" if key.endswith("_mib") else f"{bound:g}"
            if key.endswith("_ms"):
                shown = f"p99 {op} {bound:g} ms"
                op = ""
            mark = {True: "✅ met", False: "❌ missed", None: "n/a"}[target["met"]]
            return f"{op} {shown} {mark}".strip()
    return "-"


def file_stem(started_utc: str, commit: str | None) -> str:
    """``20250101T120000Z-abc1234``: UTC start of the run and HEAD's short commit."""
    stamp = started_utc.replace("+00:00", "Z").replace("-", "").replace(":", "")
    return f"{stamp}-{(commit or 'nocommit')[:7]}"


def _embedded(results: dict[str, Any], large: str, medium: str, piece: str) -> list[str]:
    """The embedded configuration's table (SQLite + a folder)."""
    m = results["measurements"]
    small = m["small_raw"]
    ngx_rps = small["nginx"]["requests_per_s"]
    heading = ["**Embedded** (SQLite + a local folder):", ""] if results.get("scaleout") else []
    lines = [
        "",
        *heading,
        "| Measurement | fhirbin | yardstick | ratio | target (issue 5) |",
        "|---|---:|---:|---:|---|",
        f"| Small raw read, 1 KiB, authenticated: req/s | "
        f"{_num(small['fhirbin']['requests_per_s'])} | nginx {_num(ngx_rps)} | "
        f"{_ratio(small['ratio'])} | {_target(results, 'small_raw_ratio')} |",
        f"| ↳ latency p50 / p99 | {_latency(small['fhirbin'])} | "
        f"nginx {_latency(small['nginx'])} | | {_target(results, 'small_raw_p99_ms')} |",
    ]
    for key, label in (
        ("fhir_json_read", "FHIR JSON read, 1 KiB (`Accept: application/fhir+json`)"),
        ("search_id", "Search `GET /Binary?_id=`, 1 KiB Binary"),
    ):
        result = m[key]["fhirbin"]
        lines.append(
            f"| {label}: req/s (p50 / p99) | {_num(result['requests_per_s'])} "
            f"({_latency(result)}) | nginx 1 KiB {_num(ngx_rps)} | {_ratio(m[key]['ratio'])} | - |"
        )
    if "token_endpoint" in m:
        token = m["token_endpoint"]["fhirbin"]
        lines.append(
            f"| Token endpoint, client_credentials: tokens/s (p50 / p99) | "
            f"{_num(token['requests_per_s'])} ({_latency(token)}) | | | - |"
        )
    down = m["download"]
    lines += [
        f"| Download {large}, native: MiB/s | {_num(down['fhirbin']['median_mib_s'])} | "
        f"nginx {_num(down['nginx']['median_mib_s'])} | {_ratio(down['ratio'])} | "
        f"{_target(results, 'download_ratio')} |",
        f"| ↳ server peak RSS growth | {down['rss']['growth_mib']:g} MiB | | | "
        f"{_target(results, 'download_rss_growth_mib')} |",
    ]
    up = m["upload"]
    lines += [
        f"| Upload {large}, raw `POST /Binary`: MiB/s | {_num(up['fhirbin']['median_mib_s'])} | "
        f"`cp` + fsync {_num(up['copy']['median_mib_s'])} | {_ratio(up['ratio'])} | "
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
    return lines


def _spread(result: dict[str, Any], digits: int = 0) -> str:
    """``median (min-max)`` of a series of runs."""
    low, high = _num(result["min"], digits), _num(result["max"], digits)
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
    profile = results.get("profile")
    if profile:
        top = ", ".join(f"`{name}` {share:.0%}" for name, share in profile["top_self"][:3])
        lines += [
            "",
            f"Profile of the small raw read (py-spy on the workers, an extra unmeasured run): "
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
    if m:
        bars += [
            ("small raw read 1 KiB\n(req/s vs nginx)", m["small_raw"]["ratio"], 0.20),
            ("FHIR JSON read 1 KiB\n(req/s vs nginx raw)", m["fhir_json_read"]["ratio"], None),
            ("search _id\n(req/s vs nginx raw)", m["search_id"]["ratio"], None),
            (f"download {large}\n(MiB/s vs nginx)", m["download"]["ratio"], 0.70),
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
    ax.set_xlabel("ratio (fhirbin / yardstick; black tick = issue 5 target)")
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
