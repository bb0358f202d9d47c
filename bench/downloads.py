#!/usr/bin/env python3
"""Which of granian's options move the large native download against nginx (bench/README.md,
"Downloads and granian's options").

fhirbin serves a whole-file download through granian's ``http.response.pathsend``; nginx uses
``sendfile``. This starts nginx once and fhirbin once per round and option set (through
bench/granian_serve.py, which replaces some of the options ``fhirbin serve`` gives granian,
without changing cli.py), on one data folder holding the same files, and downloads each size
from nginx and from fhirbin, alternating, ``--runs`` rounds::

    .venv/bin/python bench/downloads.py --sizes 256M,1G --runs 3
    .venv/bin/python bench/downloads.py --variants default,runtime-threads-2 --runs 2
    .venv/bin/python bench/downloads.py --variants default,accel-redirect --runs 5

``accel-redirect`` is not a granian option set: fhirbin runs with ``FHIRBIN_ACCEL_REDIRECT``
behind a second nginx configured by the block docs/deployment.md documents ("nginx sends the
files"), and its downloads go through that nginx (fhirbin decides, nginx sends the file by
sendfile); its CPU figure is fhirbin's and the front nginx's together.

Per option set and size it prints MiB/s as median (lowest-highest) of the runs and the ratio of
the medians with the range of the per-run ratios, and writes the JSON and the Markdown to
``bench/results/<time>-<commit>-downloads.{json,md}``. It asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import report
import run
from machine import OtherCpu, git_commit, load_info
from procs import HarnessError, ManagedProcess
from rounds import spread, transfer

GIB = 1 << 30

#: Option sets: granian keyword arguments replaced (bench/granian_serve.py); ``workers``
#: replaces fhirbin's worker count.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "runtime-threads-2": {"runtime_threads": 2},
    "runtime-mode-st": {"runtime_mode": "st"},
    "runtime-blocking-threads-1": {"runtime_blocking_threads": 1},
    "http1-buffer-408k": {"http1_settings.max_buffer_size": 417792},
    "workers-1": {"workers": 1},
    "accel-redirect": {"accel_redirect": "/_fhirbin_content/"},
}

DEPLOYMENT = run.REPO / "docs" / "deployment.md"
ACCEL_HEADING = "## nginx sends the files (`FHIRBIN_ACCEL_REDIRECT`)"


def front_nginx_conf(prefix: Path, fhirbin_port: int, blobs: Path, workers: int) -> tuple[str, int]:
    """nginx.conf for nginx in front of fhirbin: the documented ``nginx`` block with its
    listen, upstream and alias replaced; and the port it listens on."""
    section = DEPLOYMENT.read_text().split(ACCEL_HEADING, 1)[1].split("\n## ", 1)[0]
    site = section.split("```nginx\n", 1)[1].split("```", 1)[0]
    port = run.free_port()
    for old, new in (
        ("server 127.0.0.1:8080;", f"server {run.HOST}:{fhirbin_port};"),
        ("listen 80;", f"listen {run.HOST}:{port};"),
        ("alias /srv/fhirbin/data/blobs/;", f"alias {blobs}/;"),
    ):
        if site.count(old) != 1:
            raise HarnessError(f"docs/deployment.md's nginx block lost {old!r}")
        site = site.replace(old, new)
    temps = "".join(
        f"    {kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = (
        f"{user}worker_processes {workers};\ndaemon off;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\nevents {{\n    worker_connections 4096;\n}}\n"
        f"http {{\n    access_log off;\n{temps}{site}}}\n"
    )
    return conf, port


def start_front(
    cfg: run.Config, tmp: Path, fb: run.Fhirbin, index: int
) -> tuple[ManagedProcess, int]:
    """nginx in front of ``fb`` (FHIRBIN_ACCEL_REDIRECT), as docs/deployment.md configures it."""
    prefix = tmp / f"front-{index}"
    prefix.mkdir()
    conf, port = front_nginx_conf(prefix, fb.port, fb.data_dir / "blobs", cfg.workers)
    (prefix / "nginx.conf").write_text(conf)
    argv = [cfg.nginx, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")]
    front = ManagedProcess(
        "nginx front", [*argv, "-e", str(prefix / "error.log")], log=prefix / "stdout.log"
    )
    front.start()
    front.wait_http(run.HOST, port, "/fhir/metadata", timeout=30)
    return front, port


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256M,1G", help="download sizes (default 256M,1G)")
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"option sets, comma-separated (default: all of {','.join(VARIANTS)})",
    )
    parser.add_argument("--results-dir", type=Path, default=run.BENCH / "results")
    ns = parser.parse_args(argv)
    ns.sizes = [run.parse_size(s) for s in ns.sizes.split(",") if s.strip()]
    ns.variants = [v.strip() for v in ns.variants.split(",") if v.strip()]
    unknown = [v for v in ns.variants if v not in VARIANTS]
    if unknown or ns.runs < 1 or not ns.sizes:
        parser.error(f"--variants from {','.join(VARIANTS)}; --runs >= 1; --sizes not empty")
    return ns


def launcher(tmp: Path) -> str:
    """An executable that runs bench/granian_serve.py with the venv's python (start_fhirbin
    takes one command)."""
    path = tmp / "fhirbin-granian"
    python = run.REPO / ".venv" / "bin" / "python"
    path.write_text(f'#!/bin/sh\nexec "{python}" "{run.BENCH / "granian_serve.py"}" "$@"\n')
    path.chmod(0o755)
    return str(path)


def start(cfg: run.Config, tmp: Path, variant: str, index: int) -> run.Fhirbin:
    options = dict(VARIANTS[variant])
    workers = options.pop("workers", cfg.workers)
    env = {"FHIRBIN_ACCEL_REDIRECT": options.pop("accel_redirect", "")}
    return run.start_fhirbin(
        dataclasses.replace(cfg, workers=workers),
        tmp / "data",
        tmp / f"fhirbin-{variant}-{index}.log",
        extra_env={"BENCH_GRANIAN": json.dumps(options), **env},
        name=f"fhirbin {variant}",
    )


def cpu_seconds(*servers: ManagedProcess) -> float:
    """User + system CPU time of the servers and their workers so far."""
    total = 0.0
    for server in servers:
        for proc in server.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def download(
    port: int,
    target: str,
    size: int,
    headers: dict[str, str] | None = None,
    server: ManagedProcess | tuple[ManagedProcess, ...] | None = None,
    cpu: list[float] | None = None,
) -> float:
    """MiB/s of one download; with ``server`` (one or several) and ``cpu``, their CPU seconds
    per GiB sent are appended to ``cpu``."""
    servers = () if server is None else server if isinstance(server, tuple) else (server,)
    before = cpu_seconds(*servers)
    answer = run.probe(port, target, headers)
    run.expect(answer, 200, f"download {target}", size)
    if servers and cpu is not None:
        cpu.append(round((cpu_seconds(*servers) - before) / (size / GIB), 3))
    return run.mib_s(size, answer.seconds)


def measure(ns: argparse.Namespace, tmp: Path, servers: list[ManagedProcess]) -> dict[str, Any]:
    cfg = run.parse_args(["--backends", "embedded", "--size", f"{max(ns.sizes)}"])
    cfg = dataclasses.replace(cfg, fhirbin=launcher(tmp))
    www = tmp / "www"
    www.mkdir()
    files = {size: www / f"d{size}.bin" for size in ns.sizes}
    for size, path in files.items():
        run.write_random(path, size)
    (www / "small.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")  # start_nginx waits for it
    for path in (www, *www.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    run.sync_disk()
    nginx, nginx_port = run.start_nginx(cfg, tmp / "nginx", www, cfg.workers)
    servers.append(nginx)
    ids: dict[int, str] = {}
    # (variant, size) -> series: fhirbin and nginx MiB/s, and their CPU seconds per GiB
    series: dict[tuple[str, int], dict[str, list[float]]] = {
        (v, size): {"fhirbin": [], "nginx": [], "fhirbin_cpu": [], "nginx_cpu": []}
        for v in ns.variants
        for size in files
    }
    for i in range(ns.runs):
        for variant in ns.variants:
            fb = start(cfg, tmp, variant, i)
            servers.append(fb.server)
            run.wait_for_workers(fb.server, cfg.workers if variant != "workers-1" else 1)
            token = fb.token()
            if not ids:
                for size, path in files.items():
                    ids[size], _ = fb.upload(path, "application/octet-stream", token)
            auth = {"Authorization": f"Bearer {token}"}
            # where fhirbin's downloads go: fhirbin itself, or the nginx in front of it
            port, measured = fb.port, (fb.server,)
            if "accel_redirect" in VARIANTS[variant]:
                front, port = start_front(cfg, tmp, fb, i)
                servers.append(front)
                measured = (fb.server, front)
            smallest = min(files)
            # unmeasured: the page cache (uploads past 16 MiB are written with O_DIRECT) and
            # the new workers' first large response
            download(port, f"/fhir/Binary/{ids[smallest]}", smallest, auth)
            if i == 0:
                for size in files:
                    download(port, f"/fhir/Binary/{ids[size]}", size, auth)
                    download(nginx_port, f"/{files[size].name}", size)
            for size, path in files.items():
                run.log(
                    f"round {i + 1}/{ns.runs}, {variant}, {run.human_size(size)}: nginx, fhirbin"
                )
                got = series[variant, size]
                got["nginx"].append(
                    download(nginx_port, f"/{path.name}", size, None, nginx, got["nginx_cpu"])
                )
                got["fhirbin"].append(
                    download(
                        port,
                        f"/fhir/Binary/{ids[size]}",
                        size,
                        auth,
                        measured,
                        got["fhirbin_cpu"],
                    )
                )
            for server in reversed(measured):
                server.stop()
                servers.remove(server)
    out: dict[str, Any] = {}
    for (variant, size), got in series.items():
        out.setdefault(variant, {})[str(size)] = {
            **transfer(got["fhirbin"], got["nginx"]),
            "cpu_s_per_gib": {
                "fhirbin": spread(got["fhirbin_cpu"], 3),
                "nginx": spread(got["nginx_cpu"], 3),
            },
        }
    return out


def _cpu(series: dict[str, Any]) -> str:
    return f"{series['median']:.2f} ({series['min']:.2f}-{series['max']:.2f})"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"### Downloads and granian's options: {results['started_utc']}, commit "
        f"`{(results['commit'] or 'unknown')[:7]}`",
        "",
        "nginx (sendfile) against fhirbin (pathsend) per option set (accel-redirect: fhirbin "
        "with FHIRBIN_ACCEL_REDIRECT behind nginx, which sends the file; CPU: both together); "
        f"{results['runs']} rounds, "
        "each starting fhirbin anew per option set; MiB/s median (lowest-highest), ratio of the "
        "medians (range of the per-run ratios). Other processes used "
        f"{results['load']['during']['other_cpu_percent']}% of the CPUs during the run.",
        "",
        "| Option set (granian arguments) | size | fhirbin MiB/s | nginx MiB/s | ratio "
        "| server CPU s per GiB: fhirbin / nginx |",
        "|---|---|---:|---:|---:|---|",
    ]
    for variant, by_size in results["variants"].items():
        options = json.dumps(VARIANTS.get(variant, {})) or "{}"
        for size, row in by_size.items():
            lines.append(
                f"| {variant} `{options}` | {run.human_size(int(size))} | "
                f"{report._spread(row['fhirbin'])} | {report._spread(row['yardstick'])} | "
                f"{report._ratio(row['ratio'])} ({report._ratios(row['ratio_runs'])}) | "
                f"{_cpu(row['cpu_s_per_gib']['fhirbin'])} / {_cpu(row['cpu_s_per_gib']['nginx'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse(argv)
    started = datetime.now(UTC)
    commit = git_commit(run.REPO)
    load_before = load_info(1.0)
    other = OtherCpu()
    tmp = run.BENCH / "tmp" / f"downloads-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    tmp.mkdir(parents=True)
    servers: list[ManagedProcess] = []
    try:
        with run.signals_as_interrupts():
            variants = measure(ns, tmp, servers)
    except KeyboardInterrupt:
        return 130
    except HarnessError as exc:
        run.log(f"FAILED: {exc} (logs in {tmp})")
        return 2
    finally:
        for server in reversed(servers):
            server.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    results = {
        "started_utc": started.isoformat(timespec="seconds"),
        "commit": commit,
        "runs": ns.runs,
        "sizes": ns.sizes,
        "options": {v: VARIANTS[v] for v in ns.variants},
        "load": {"before": load_before, "during": other.percent()},
        "variants": variants,
    }
    stem = report.file_stem(results["started_utc"], commit) + "-downloads"
    ns.results_dir.mkdir(parents=True, exist_ok=True)
    (ns.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (ns.results_dir / f"{stem}.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
