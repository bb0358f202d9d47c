#!/usr/bin/env python3
"""fhirbin against nginx, on the same bytes, in the same run (issue 5). See bench/README.md.

Run with the project's venv python (``make bench`` does, after ``bench/setup.sh``)::

    .venv/bin/python bench/run.py                              # the full run: 1 GiB, 10 s per wrk
    .venv/bin/python bench/run.py --duration 2 --size 64M --json-size 16M   # a quick check

It never asserts a timing. It exits 0 when it measured everything (whatever the numbers), 2
when the harness itself failed (a server did not start, a request errored), 130 on Ctrl-C; it
stops every process it started in all three cases.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import report
import scrape
from client import HttpError, Response, request
from machine import OtherCpu, git_commit, load_info, machine_info, versions
from procs import MIB, HarnessError, ManagedProcess, RssReport, RssSampler, free_port
from pyspy import Profile, find_py_spy, recorder
from rounds import Step, alternate, compare, ratio, spread, transfer
from scaleout import ScaleOut

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOST = "127.0.0.1"  # loopback only: both servers listen here and nothing else is contacted
KIB = 1 << 10
GIB = 1 << 30
SCOPE = "system/Binary.cruds"
FHIR_JSON = "application/fhir+json"
FORM = "application/x-www-form-urlencoded"
#: The small-read figures, each measured against nginx's 1 KiB file in the same rounds.
SMALL_READS = ("small_raw", "fhir_json_read", "search_id", "search_post", "vread")
NGINX_SMALL = "nginx, 1 KiB static file, wrk runs alternating with fhirbin's"
#: The figures profiled with py-spy (--profile), and how the profile names them.
PROFILED = {
    "small_raw": "the small authenticated raw read",
    "search_id": "the search `GET /Binary?_id=`",
}
BUSY_PERCENT = 10.0  # other processes' share of the CPUs above which the results get a note
BACKENDS = ("embedded", "scaleout")  # SQLite + a folder; PostgreSQL + S3 (SeaweedFS)

NGINX_CONF = """\
# Written by bench/run.py for one run: a plain static file server as the yardstick.
{user}worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {host}:{port};
        root {root};
    }}
}}
"""


def parse_size(text: str) -> int:
    """``1G``, ``64M``, ``512K``, ``100MiB`` or a byte count (binary units throughout)."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not found:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 64M, 512K)")
    unit = {"": 1, "K": KIB, "M": MIB, "G": GIB}[found.group(2).upper()]
    size = int(found.group(1)) * unit
    if size < 2 * MIB:
        raise argparse.ArgumentTypeError("sizes below 2 MiB make no sense here")
    return size


def human_size(size: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


@dataclass
class Config:
    size: int
    json_size: int
    slice: int
    duration: float
    warmup: float
    threads: int
    connections: int
    wrk_timeout: float
    runs: int
    workers: int
    fhirbin: str
    nginx: str
    wrk: str
    results_dir: Path
    keep_tmp: bool
    label: str
    profile: bool
    render: Path | None
    backends: tuple[str, ...] = BACKENDS
    scaleout_size: int = 256 * MIB
    download_size: int = 256 * MIB


def parse_args(argv: Sequence[str] | None) -> Config:
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(
        description="Benchmark fhirbin against nginx on the same machine (see bench/README.md)."
    )
    parser.add_argument("--size", type=parse_size, default=GIB, help="large file (default 1G)")
    parser.add_argument(
        "--download-size",
        type=parse_size,
        default=256 * MIB,
        help="a second native download besides --size (default 256M; issue 11 targets both); "
        "not measured when not smaller than --size",
    )
    parser.add_argument(
        "--json-size",
        type=parse_size,
        default=100 * MIB,
        help="file read in the FHIR JSON (base64) form (default 100M)",
    )
    parser.add_argument(
        "--slice", type=parse_size, default=MIB, help="Range read slice (default 1M)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per wrk run (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured wrk seconds first (default 1)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--wrk-timeout", type=float, default=10.0, help="wrk per-request timeout, s (default 10)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each large transfer; median reported (3)"
    )
    parser.add_argument(
        "--workers", type=int, default=cores, help=f"fhirbin workers (default: cores = {cores})"
    )
    parser.add_argument(
        "--fhirbin",
        default=str(REPO / ".venv" / "bin" / "fhirbin"),
        help="the fhirbin command (default: the project venv's)",
    )
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument(
        "--results-dir", type=Path, default=BENCH / "results", help="default bench/results"
    )
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep bench/tmp/run-* (files, logs) afterwards"
    )
    parser.add_argument("--label", default="", help="a free-text note stored with the results")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS.json",
        help="measure nothing: rewrite the .md, .png and latest.md of an earlier run's JSON",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run py-spy on the fhirbin workers during extra, unmeasured runs of the small raw "
        "read and of the _id search (default: on; --no-profile skips it)",
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="configurations to measure, comma-separated: embedded (SQLite + a folder), "
        "scaleout (PostgreSQL + S3 on a private SeaweedFS) (default: both)",
    )
    parser.add_argument(
        "--scaleout-size",
        type=parse_size,
        default=256 * MIB,
        help="large file of the scale-out transfers (default 256M)",
    )
    ns = parser.parse_args(argv)
    backends = tuple(dict.fromkeys(b.strip() for b in ns.backends.split(",") if b.strip()))
    if not backends or any(b not in BACKENDS for b in backends):
        parser.error(f"--backends: a comma-separated subset of {','.join(BACKENDS)}")
    if ns.runs < 1 or ns.threads < 1 or ns.connections < ns.threads or ns.workers < 1:
        parser.error("runs, threads and workers must be >= 1; connections >= threads")
    if ns.duration <= 0 or ns.warmup < 0:
        parser.error("duration must be > 0 and warmup >= 0")
    if ns.slice >= ns.size:
        parser.error("--slice must be smaller than --size")
    return Config(
        size=ns.size,
        json_size=ns.json_size,
        slice=ns.slice,
        duration=ns.duration,
        warmup=ns.warmup,
        threads=ns.threads,
        connections=ns.connections,
        wrk_timeout=ns.wrk_timeout,
        runs=ns.runs,
        workers=ns.workers,
        fhirbin=ns.fhirbin,
        nginx=ns.nginx,
        wrk=ns.wrk,
        results_dir=ns.results_dir,
        keep_tmp=ns.keep_tmp,
        label=ns.label,
        profile=ns.profile,
        render=ns.render,
        backends=backends,
        scaleout_size=ns.scaleout_size,
        download_size=ns.download_size,
    )


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- test files -------------------------------------------------------------------------------


@dataclass
class Files:
    small: Path  # 1 KiB, a (fake) PDF
    medium: Path  # --json-size, read in the FHIR JSON form (embedded only)
    large: Path  # --size (embedded only)
    download: Path  # --download-size (embedded only, when smaller than --size)
    scaleout: Path  # --scaleout-size (scale-out only)


def write_random(path: Path, size: int) -> None:
    block = 8 * MIB
    with path.open("wb") as out:
        left = size
        while left > 0:
            n = min(block, left)
            out.write(os.urandom(n))
            left -= n


def make_files(www: Path, cfg: Config) -> Files:
    www.mkdir(parents=True)
    small = www / "small.pdf"
    head, tail = b"%PDF-1.4\n%", b"\n%%EOF\n"
    small.write_bytes(head + os.urandom(KIB - len(head) - len(tail)) + tail)
    files = Files(
        small=small,
        medium=www / "medium.bin",
        large=www / "large.bin",
        download=www / "download.bin",
        scaleout=www / "scaleout.bin",
    )
    if "embedded" in cfg.backends:
        write_random(files.medium, cfg.json_size)
        write_random(files.large, cfg.size)
        if cfg.download_size < cfg.size:
            write_random(files.download, cfg.download_size)
    if "scaleout" in cfg.backends:
        write_random(files.scaleout, cfg.scaleout_size)
    # nginx workers may run as another user when not root: let them read the folder.
    for path in (www, *www.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return files


# --- servers ----------------------------------------------------------------------------------


def start_nginx(cfg: Config, prefix: Path, root: Path, workers: int) -> tuple[ManagedProcess, int]:
    prefix.mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            # As root, nginx would switch its workers to "nobody"; keep them able to read the tree.
            user="user root;\n" if os.geteuid() == 0 else "",
            workers=workers,
            prefix=prefix,
            host=HOST,
            port=port,
            root=root,
        )
    )
    argv = [cfg.nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
    server = ManagedProcess("nginx", argv, log=prefix / "stdout.log")
    server.start()
    server.wait_http(HOST, port, "/small.pdf", timeout=30)
    return server, port


def supports_flag(command: str, subcommand: Sequence[str], flag: str) -> bool:
    done = subprocess.run(  # noqa: S603 - fixed argv
        [command, *subcommand, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise HarnessError(f"{command} {' '.join(subcommand)} --help failed:\n{done.stderr}")
    return flag in done.stdout


@dataclass
class Fhirbin:
    server: ManagedProcess
    port: int
    data_dir: Path
    workers_via: str
    client_id: str = ""
    client_secret: str = ""
    metrics_token: str = ""

    @property
    def base_path(self) -> str:
        return "/fhir"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/fhir"

    def token(self) -> str:
        """A fresh access token (tokens live 5 minutes by default; each measurement gets one)."""
        user = urllib.parse.quote_plus(self.client_id)
        password = urllib.parse.quote_plus(self.client_secret)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        answer = request(
            HOST,
            self.port,
            "POST",
            f"{self.base_path}/auth/token",
            {
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            body=b"grant_type=client_credentials",
            keep_body=True,
            timeout=30,
        )
        if answer.status != 200:
            raise HarnessError(f"token request: {answer.status} {answer.body[:500]!r}")
        token: str = json.loads(answer.body)["access_token"]
        return token

    def metrics(self) -> str:
        """The Prometheus exposition of ``GET /metrics`` (every worker's, summed)."""
        headers = {"Authorization": f"Bearer {self.metrics_token}"} if self.metrics_token else {}
        answer = request(HOST, self.port, "GET", "/metrics", headers, keep_body=True, timeout=30)
        if answer.status != 200:
            raise HarnessError(f"GET /metrics: {answer.status} {answer.body[:300]!r}")
        return answer.body.decode()

    def upload(self, path: Path, content_type: str, token: str) -> tuple[str, Response]:
        answer = request(
            HOST,
            self.port,
            "POST",
            f"{self.base_path}/Binary",
            {"Authorization": f"Bearer {token}", "Content-Type": content_type},
            body_file=path,
            keep_body=True,
        )
        if answer.status != 201:
            raise HarnessError(f"POST Binary ({path.name}): {answer.status} {answer.body[:500]!r}")
        found = re.search(r"/Binary/([A-Za-z0-9\-.]{1,64})(?:/|$)", answer.header("location"))
        if not found:
            raise HarnessError(f"POST Binary: no id in Location {answer.header('location')!r}")
        return found.group(1), answer


def start_fhirbin(
    cfg: Config,
    data_dir: Path,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    name: str = "fhirbin",
) -> Fhirbin:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    env.update(extra_env or {})
    env["FHIRBIN_WORKERS"] = str(cfg.workers)  # used when --workers is not a flag (yet)
    env["FHIRBIN_MAX_BINARY_SIZE"] = str(max(GIB, cfg.size, cfg.json_size))
    # /metrics is scraped at the end of the run, as an operator would: with a scrape token.
    env["FHIRBIN_METRICS_TOKEN"] = metrics_token = secrets.token_urlsafe(24)
    argv = [cfg.fhirbin, "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]
    workers_via = "FHIRBIN_WORKERS"
    if supports_flag(cfg.fhirbin, ["serve"], "--workers"):
        argv += ["--workers", str(cfg.workers)]
        workers_via = "--workers"
    server = ManagedProcess(name, argv, log=log_path, env=env, cwd=REPO)
    server.start()
    fhirbin = Fhirbin(
        server=server,
        port=port,
        data_dir=data_dir,
        workers_via=workers_via,
        metrics_token=metrics_token,
    )
    server.wait_http(HOST, port, "/fhir/metadata", timeout=90)
    created = subprocess.run(  # noqa: S603 - fixed argv
        [
            *(cfg.fhirbin, "client", "create", "bench", "--scope", SCOPE),
            *("--data-dir", str(data_dir), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=REPO,
    )
    if created.returncode != 0:
        raise HarnessError(f"fhirbin client create failed:\n{created.stdout}{created.stderr}")
    client = json.loads(created.stdout)
    fhirbin.client_id, fhirbin.client_secret = client["client_id"], client["client_secret"]
    return fhirbin


def wait_for_workers(server: ManagedProcess, expected: int, timeout: float = 30.0) -> int:
    """How many server processes are up (the main one and its workers), once they settle."""
    deadline = time.monotonic() + timeout
    count = len(server.processes())
    while count < expected + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        count = len(server.processes())
    return count


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Wrk:
    cfg: Config
    scripts: Path
    warmed: set[str] = field(default_factory=set)

    def script(self, name: str) -> Path:
        path = self.scripts / f"{name}.lua"
        if not path.exists():
            self.scripts.mkdir(parents=True, exist_ok=True)
            body = (BENCH / "wrk" / f"{name}.lua").read_text()
            path.write_text(body + "\n" + (BENCH / "wrk" / "report.lua").read_text())
        return path

    def run(
        self,
        url: str,
        *,
        script: str = "static",
        headers: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> dict[str, Any]:
        if self.cfg.warmup > 0:
            self.once(url, script, headers, args, self.cfg.warmup)
        return self.once(url, script, headers, args, self.cfg.duration)

    def once(
        self,
        url: str,
        script: str,
        headers: Mapping[str, str] | None,
        args: Sequence[str],
        duration: float,
    ) -> dict[str, Any]:
        cfg = self.cfg
        argv = [
            cfg.wrk,
            "-t",
            str(cfg.threads),
            "-c",
            str(cfg.connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            f"{max(1, round(cfg.wrk_timeout))}s",
            "-s",
            str(self.script(script)),
        ]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        argv.append(url)
        if args:
            argv += ["--", *args]
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv
                argv, capture_output=True, text=True, timeout=duration + cfg.wrk_timeout + 60
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"wrk did not finish: {url}") from exc
        found = re.search(r"^BENCH_JSON (\{.*\})$", done.stdout, re.MULTILINE)
        if done.returncode != 0 or not found:
            raise HarnessError(
                f"wrk failed ({done.returncode}) on {url}:\n{done.stdout}{done.stderr}"
            )
        raw = json.loads(found.group(1))
        seconds = raw["duration_us"] / 1e6
        requests = raw["requests"]
        latency = raw["latency_us"]
        errors = raw["errors"]
        return {
            "requests": requests,
            "seconds": round(seconds, 3),
            "requests_per_s": round(requests / seconds, 1) if seconds else 0.0,
            "latency_ms": (
                {k: round(v / 1000, 3) for k, v in latency.items()} if latency else None
            ),
            "errors": errors,
            "error_count": sum(errors.values()),
            "bytes_per_response": round(raw["bytes"] / requests) if requests else None,
            "transfer_mib_s": round(raw["bytes"] / seconds / MIB, 1) if seconds else 0.0,
        }


def probe(
    port: int, target: str, headers: Mapping[str, str] | None = None, keep: bool = False
) -> Response:
    """One request, checked by the caller: confirms what the wrk run will be measuring."""
    return request(HOST, port, "GET", target, headers, keep_body=keep, timeout=120)


def describe(answer: Response) -> dict[str, Any]:
    return {
        "status": answer.status,
        "content_type": answer.header("content-type"),
        "content_range": answer.header("content-range") or None,
        "bytes": answer.nbytes,
    }


def expect(answer: Response, status: int, what: str, nbytes: int | None = None) -> None:
    if answer.status != status or (nbytes is not None and answer.nbytes != nbytes):
        raise HarnessError(
            f"{what}: expected {status} with {nbytes} bytes, got {answer.status} with "
            f"{answer.nbytes} bytes {answer.body[:300]!r}"
        )


def mib_s(size: int, seconds: float) -> float:
    return round(size / seconds / MIB, 1)


def summarize(runs: list[float]) -> dict[str, Any]:
    return {
        "runs_mib_s": runs,
        "median_mib_s": round(statistics.median(runs), 1),
        "best_mib_s": max(runs),
    }


def worst(reports: list[RssReport]) -> dict[str, Any]:
    return max(reports, key=lambda r: r.growth).as_dict()


def sync_disk() -> None:
    """Flush every dirty page so one timed write does not pay for the previous one's writeback."""
    os.sync()
    time.sleep(0.5)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed_copy(src: Path, dst: Path) -> float:
    """``cp`` (no reflink) plus fsync of the file and of its folder, as fhirbin does."""
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["cp", "--reflink=never", str(src), str(dst)],  # noqa: S607 - coreutils cp from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"cp failed: {done.stderr}")
    fsync_path(dst)
    fsync_path(dst.parent)
    return time.perf_counter() - started


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    cfg: Config
    tmp: Path
    nginx_port: int
    fhirbin: Fhirbin
    files: Files
    wrk: Wrk
    notes: list[str]
    ids: dict[str, str] = field(default_factory=dict)

    def auth(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.fhirbin.token()}", **(extra or {})}

    # d. upload (first: its first run creates the large Binary the reads use)
    def upload(self) -> dict[str, Any]:
        cfg, fb = self.cfg, self.fhirbin
        copies = self.tmp / "copy"
        copies.mkdir()
        fhirbin_runs: list[float] = []
        copy_runs: list[float] = []
        rss: list[RssReport] = []
        for i in range(cfg.runs):
            log(f"upload {human_size(cfg.size)}: run {i + 1}/{cfg.runs}")
            token = fb.token()
            sync_disk()
            with RssSampler(fb.server) as sampler:
                binary_id, answer = fb.upload(self.files.large, "application/octet-stream", token)
            rss.append(sampler.report())
            fhirbin_runs.append(mib_s(cfg.size, answer.seconds))
            self.ids.setdefault("large", binary_id)
            sync_disk()
            target = copies / f"large-{i}.bin"
            copy_runs.append(mib_s(cfg.size, timed_copy(self.files.large, target)))
            target.unlink()
        fhirbin = summarize(fhirbin_runs)
        copy = summarize(copy_runs)
        return {
            "fhirbin": fhirbin,
            "copy": copy,
            "copy_method": (
                "cp --reflink=never SRC DST, then fsync(DST) and fsync(its folder), timed "
                "together; os.sync() before every timed upload and copy; source in page cache"
            ),
            "ratio": ratio(fhirbin["median_mib_s"], copy["median_mib_s"]),
            "ratio_best": ratio(fhirbin["best_mib_s"], copy["best_mib_s"]),
            "rss": worst(rss),
        }

    def setup_small(self) -> None:
        token = self.fhirbin.token()
        self.ids["small"], _ = self.fhirbin.upload(self.files.small, "application/pdf", token)
        self.ids["medium"], _ = self.fhirbin.upload(
            self.files.medium, "application/octet-stream", token
        )
        if self.cfg.download_size < self.cfg.size:
            self.ids["download"], _ = self.fhirbin.upload(
                self.files.download, "application/octet-stream", token
            )

    def small_targets(self) -> dict[str, tuple[str, str, dict[str, str], str, bytes]]:
        """The small-read figures: name -> (method, target, extra headers, wrk script, body)."""
        small = self.ids["small"]
        return {
            "small_raw": ("GET", f"/fhir/Binary/{small}", {}, "static", b""),
            "fhir_json_read": (
                "GET",
                f"/fhir/Binary/{small}",
                {"Accept": FHIR_JSON},
                "static",
                b"",
            ),
            "search_id": ("GET", f"/fhir/Binary?_id={small}", {}, "static", b""),
            "search_post": ("POST", "/fhir/Binary/_search", {}, "post", f"_id={small}".encode()),
            "vread": ("GET", f"/fhir/Binary/{small}/_history/1", {}, "static", b""),
        }

    def check_small(self, name: str) -> dict[str, Any]:
        """One request of a small-read figure, checked: the wrk runs measure the right answer."""
        method, target, extra, _, body = self.small_targets()[name]
        headers = self.auth(extra)
        if body:
            headers["Content-Type"] = FORM
        answer = request(
            HOST, self.fhirbin.port, method, target, headers, body=body or None, keep_body=True
        )
        expect(answer, 200, f"fhirbin {name}")
        native = name in ("small_raw", "vread")
        if native and answer.nbytes != KIB:
            raise HarnessError(f"{name}: {answer.nbytes} bytes, expected the 1 KiB Binary")
        if not native and FHIR_JSON not in answer.header("content-type"):
            raise HarnessError(f"{name}: not FHIR JSON: {answer.header('content-type')}")
        if name.startswith("search") and self.ids["small"] not in answer.body.decode():
            raise HarnessError(f"{name}: not the Bundle expected: {answer.body[:300]!r}")
        return describe(answer)

    def small_wrk(self, name: str, token: str) -> tuple[str, str, dict[str, str], list[str]]:
        """wrk's URL, script, headers and script arguments for a small-read figure."""
        _, target, extra, script, body = self.small_targets()[name]
        headers = {"Authorization": f"Bearer {token}", **extra}
        url = f"{self.fhirbin.base_url}{target[len('/fhir') :]}"
        return url, script, headers, [body.decode()] if body else []

    def small_step(self, name: str, token: str) -> Step:
        """One wrk run (after its warm-up) of a small-read figure with ``token``."""
        url, script, headers, args = self.small_wrk(name, token)
        return name, lambda: self.wrk.run(url, script=script, headers=headers, args=args)

    # a. small reads: --runs rounds alternating nginx's 1 KiB file and every fhirbin figure
    def small_reads(self) -> dict[str, Any]:
        probes = {name: self.check_small(name) for name in SMALL_READS}
        nginx_answer = probe(self.nginx_port, "/small.pdf")
        expect(nginx_answer, 200, "nginx small read", KIB)
        nginx_url = f"http://{HOST}:{self.nginx_port}/small.pdf"

        def round_steps(_: int) -> list[Step]:
            token = self.fhirbin.token()  # tokens live 5 minutes: a fresh one every round
            steps: list[Step] = [("nginx", lambda: self.wrk.run(nginx_url))]
            return steps + [self.small_step(name, token) for name in SMALL_READS]

        runs = alternate(self.cfg.runs, round_steps, log, "small reads")
        out: dict[str, Any] = {}
        for name in SMALL_READS:
            out[name] = compare(runs[name], runs["nginx"], NGINX_SMALL)
            out[name]["probe"] = probes[name]
        out["small_raw"]["nginx_probe"] = describe(nginx_answer)
        return out

    def profile(self, out_dir: Path, stem: str) -> dict[str, Any]:
        """py-spy on every worker during one more run of the small raw read and one of the
        ``_id`` search (not measurements)."""
        py_spy = find_py_spy()
        if py_spy is None:
            self.notes.append("--profile: py-spy not found (bench/setup.sh installs it).")
            return {}
        token = self.fhirbin.token()
        return {
            name: self.profile_one(py_spy, name, title, token, out_dir, stem)
            for name, title in PROFILED.items()
        }

    def profile_one(
        self, py_spy: str, name: str, title: str, token: str, out_dir: Path, stem: str
    ) -> dict[str, Any]:
        server = self.fhirbin.server
        workers = [p for p in server.processes() if p.pid != server.pid] or server.processes()
        url, script, headers, args = self.small_wrk(name, token)
        kind = name.replace("_", "-")
        out_dir.mkdir(parents=True, exist_ok=True)
        raws: list[Path] = []
        spies: list[ManagedProcess] = []
        log(f"profiling {title} with py-spy on {len(workers)} worker(s)")
        try:
            for proc in workers:
                raw = out_dir / f"{stem}-profile-{kind}-{proc.pid}.txt"
                spy = recorder(
                    py_spy, proc.pid, self.cfg.duration, raw, self.tmp / f"py-spy-{proc.pid}.log"
                )
                spy.start()
                spies.append(spy)
                raws.append(raw)
            time.sleep(0.5)  # let py-spy attach before the load starts
            under_profiler = self.wrk.once(url, script, headers, args, self.cfg.duration)
            for spy in spies:
                if spy.wait(self.cfg.duration + 30) != 0:
                    self.notes.append(f"--profile: {spy.name} failed: {spy.log_tail(5)}")
        finally:
            for spy in spies:
                spy.stop()
        profile = Profile.load(raws)
        summary = out_dir / f"{stem}-profile-{kind}.md"
        summary.write_text(
            profile.markdown(f"py-spy profile of {title}")
            + "\nRaw collapsed stacks (flamegraph.pl, speedscope): "
            + ", ".join(f"`{raw.name}`" for raw in raws if raw.is_file())
            + "\n"
        )
        return {
            "title": title,
            "summary": summary.name,
            "raw": [raw.name for raw in raws if raw.is_file()],
            "samples": profile.total,
            "top_self": [[name, round(share, 4)] for name, share in profile.top_self(10)],
            "top_inclusive": [
                [name, round(own, 4), round(inc, 4)] for name, own, inc in profile.top_inclusive()
            ],
            "requests_per_s_under_profiler": under_profiler["requests_per_s"],
        }

    def token_endpoint(self) -> dict[str, Any]:
        """Tokens per second from the token endpoint (a client that re-fetches a token before
        most calls, as Medplum's does, feels this): client secrets are SHA-256 hashed, not
        argon2id (docs/security.md#tokens)."""
        fhirbin = self.fhirbin
        user = urllib.parse.quote_plus(fhirbin.client_id)
        password = urllib.parse.quote_plus(fhirbin.client_secret)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers = {"Authorization": f"Basic {basic}"}
        log("token endpoint: fhirbin")
        result = self.wrk.run(f"{fhirbin.base_url}/auth/token", script="token", headers=headers)
        if result["error_count"]:
            raise HarnessError(f"token endpoint answered errors: {result['errors']}")
        return {"fhirbin": result}

    # c. large native downloads: --size, and --download-size when smaller
    def downloads(self) -> dict[str, Any]:
        out = {"download": self.download("large", self.files.large, self.cfg.size)}
        if "download" in self.ids:
            out["download_small"] = self.download(
                "download", self.files.download, self.cfg.download_size
            )
        return out

    def download(self, key: str, file: Path, size: int) -> dict[str, Any]:
        fb = self.fhirbin
        path, nginx_path = f"/fhir/Binary/{self.ids[key]}", f"/{file.name}"
        fhirbin_runs: list[float] = []
        nginx_runs: list[float] = []
        rss: list[RssReport] = []
        # One unmeasured download from each first: nginx's file is in the page cache (the
        # harness just wrote it), fhirbin's may not be (uploads write past 16 MiB with
        # O_DIRECT), and the comparison is of serving, not of the disk.
        log(f"download {human_size(size)}: warm-up (unmeasured)")
        expect(probe(fb.port, path, self.auth()), 200, "fhirbin warm-up download", size)
        expect(probe(self.nginx_port, nginx_path), 200, "nginx warm-up download", size)
        for i in range(self.cfg.runs):
            log(f"download {human_size(size)}: run {i + 1}/{self.cfg.runs}: nginx, fhirbin")
            answer = probe(self.nginx_port, nginx_path)
            expect(answer, 200, "nginx download", size)
            nginx_runs.append(mib_s(size, answer.seconds))
            auth = self.auth()
            with RssSampler(fb.server) as sampler:
                answer = probe(fb.port, path, auth)
            rss.append(sampler.report())
            expect(answer, 200, "fhirbin download", size)
            fhirbin_runs.append(mib_s(size, answer.seconds))
        both = transfer(fhirbin_runs, nginx_runs)
        return {
            "size": size,
            "fhirbin": {**summarize(fhirbin_runs), **both["fhirbin"]},
            "nginx": {**summarize(nginx_runs), **both["yardstick"]},
            "ratio": both["ratio"],
            "ratio_runs": both["ratio_runs"],
            "ratio_best": ratio(max(fhirbin_runs), max(nginx_runs)),
            "rss": worst(rss),
        }

    # e. FHIR JSON (base64) read of the medium file
    def fhir_json_large(self) -> dict[str, Any]:
        cfg, fb = self.cfg, self.fhirbin
        path = f"/fhir/Binary/{self.ids['medium']}"
        base64_len = 4 * math.ceil(cfg.json_size / 3)
        content_runs: list[float] = []
        wire_runs: list[float] = []
        nginx_runs: list[float] = []
        rss: list[RssReport] = []
        wire_bytes = 0
        for i in range(cfg.runs):
            log(f"FHIR JSON read {human_size(cfg.json_size)}: run {i + 1}/{cfg.runs}")
            auth = self.auth({"Accept": FHIR_JSON})
            with RssSampler(fb.server) as sampler:
                answer = probe(fb.port, path, auth)
            rss.append(sampler.report())
            expect(answer, 200, "fhirbin FHIR JSON read")
            if answer.nbytes < base64_len or FHIR_JSON not in answer.header("content-type"):
                raise HarnessError(
                    f"FHIR JSON read: {answer.nbytes} bytes of "
                    f"{answer.header('content-type')!r}, expected >= {base64_len} of FHIR JSON"
                )
            wire_bytes = answer.nbytes
            content_runs.append(mib_s(cfg.json_size, answer.seconds))
            wire_runs.append(mib_s(answer.nbytes, answer.seconds))
            answer = probe(self.nginx_port, "/medium.bin")
            expect(answer, 200, "nginx medium download", cfg.json_size)
            nginx_runs.append(mib_s(cfg.json_size, answer.seconds))
        content, nginx = summarize(content_runs), summarize(nginx_runs)
        return {
            "fhirbin": content,
            "fhirbin_wire": summarize(wire_runs),
            "wire_bytes": wire_bytes,
            "nginx_raw": nginx,
            "ratio": ratio(content["median_mib_s"], nginx["median_mib_s"]),
            "ratio_to": "nginx serving the raw file (the JSON form has 4/3 the bytes to send)",
            "rss": worst(rss),
        }

    # f. Range reads of --slice slices at random offsets
    def range_reads(self) -> dict[str, Any]:
        cfg = self.cfg
        path = f"/fhir/Binary/{self.ids['large']}"
        first = random.randrange(cfg.size - cfg.slice)  # noqa: S311 - not for security
        range_header = {"Range": f"bytes={first}-{first + cfg.slice - 1}"}
        expected_range = f"bytes {first}-{first + cfg.slice - 1}/{cfg.size}"
        auth = self.auth()
        out: dict[str, Any] = {}
        supported: dict[str, bool] = {}
        for name, port, target, headers in (
            ("nginx", self.nginx_port, "/large.bin", {}),
            ("fhirbin", self.fhirbin.port, path, auth),
        ):
            answer = probe(port, target, {**headers, **range_header})
            if answer.status not in (200, 206):
                raise HarnessError(f"{name} Range probe: status {answer.status}")
            supported[name] = (
                answer.status == 206
                and answer.nbytes == cfg.slice
                and answer.header("content-range") == expected_range
            )
            log(f"Range reads of {human_size(cfg.slice)}: {name}")
            url = f"http://{HOST}:{port}{target}"
            result = self.wrk.run(
                url, script="range", headers=headers, args=[str(cfg.size), str(cfg.slice)]
            )
            out[name] = {**result, "probe": describe(answer), "range_supported": supported[name]}
        comparable = supported["fhirbin"] and supported["nginx"]
        if not supported["fhirbin"]:
            status = out["fhirbin"]["probe"]["status"]
            self.notes.append(
                f"Range: fhirbin answered a Range request with {status} "
                f"({out['fhirbin']['probe']['bytes']} bytes) instead of 206 with "
                f"{cfg.slice} bytes: Range is not supported (yet), so its Range req/s are "
                "whole-file downloads and the ratio is not comparable."
            )
        return {
            **out,
            "range_supported": supported["fhirbin"],
            "ratio": (
                ratio(out["fhirbin"]["requests_per_s"], out["nginx"]["requests_per_s"])
                if comparable
                else None
            ),
        }


def stamp(path: Path, run: int) -> None:
    """Make the file's content new (its first 16 bytes), so every upload run is a fresh blob
    rather than a dedup hit of the previous one; the rest stays in the page cache."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, run.to_bytes(8, "big") + os.urandom(8), 0)
    finally:
        os.close(fd)


@dataclass
class ScaleRun:
    """The scale-out measurements: fhirbin on PostgreSQL + S3 against nginx and direct S3."""

    cfg: Config
    nginx_port: int
    fhirbin: Fhirbin
    scale: ScaleOut
    files: Files
    wrk: Wrk
    notes: list[str]
    ids: dict[str, str] = field(default_factory=dict)
    direct_key: str = ""

    def auth(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.fhirbin.token()}", **(extra or {})}

    def setup_small(self) -> None:
        token = self.fhirbin.token()
        self.ids["small"], _ = self.fhirbin.upload(self.files.small, "application/pdf", token)

    # Small reads: --runs wrk runs of each, alternating nginx, raw read, search.
    def small_reads(self) -> dict[str, Any]:
        small = self.ids["small"]
        raw_path, search_path = f"/fhir/Binary/{small}", f"/fhir/Binary?_id={small}"
        auth = self.auth()
        expect(probe(self.fhirbin.port, raw_path, auth), 200, "scale-out small raw read", KIB)
        expect(probe(self.nginx_port, "/small.pdf"), 200, "nginx small read", KIB)
        answer = probe(self.fhirbin.port, search_path, auth, keep=True)
        expect(answer, 200, "scale-out search _id")
        if FHIR_JSON not in answer.header("content-type") or small not in answer.body.decode():
            raise HarnessError(f"scale-out search _id: not the Bundle expected: {answer.body!r}")
        nginx_url = f"http://{HOST}:{self.nginx_port}/small.pdf"
        raw_url, search_url = f"{self.fhirbin.base_url}/Binary/{small}", self.fhirbin.base_url

        def round_steps(_: int) -> list[Step]:
            auth = self.auth()
            return [
                ("nginx", lambda: self.wrk.run(nginx_url)),
                ("small_raw", lambda: self.wrk.run(raw_url, headers=auth)),
                (
                    "search_id",
                    lambda: self.wrk.run(f"{search_url}/Binary?_id={small}", headers=auth),
                ),
            ]

        runs = alternate(self.cfg.runs, round_steps, log, "scale-out small reads")
        return {
            key: compare(runs[key], runs["nginx"], NGINX_SMALL)
            for key in ("small_raw", "search_id")
        }

    # Upload first: its first run creates the Binary the downloads read.
    def upload(self) -> dict[str, Any]:
        cfg, fb, path = self.cfg, self.fhirbin, self.files.scaleout
        size = cfg.scaleout_size
        client = self.scale.client()
        fhirbin_runs: list[float] = []
        direct_runs: list[float] = []
        rss: list[RssReport] = []
        for i in range(cfg.runs):
            log(f"scale-out upload {human_size(size)}: run {i + 1}/{cfg.runs}")
            stamp(path, i)
            token = fb.token()
            sync_disk()
            with RssSampler(fb.server) as sampler:
                binary_id, answer = fb.upload(path, "application/octet-stream", token)
            rss.append(sampler.report())
            fhirbin_runs.append(mib_s(size, answer.seconds))
            self.ids.setdefault("large", binary_id)
            sync_disk()
            key = f"direct/large-{i}.bin"
            direct_runs.append(mib_s(size, self.scale.direct_upload(client, key, path)))
            if self.direct_key:
                client.delete_object(Bucket=self.scale.seaweed.bucket, Key=key)
            else:
                self.direct_key = key
        fhirbin, direct = spread(fhirbin_runs), spread(direct_runs)
        return {
            "fhirbin": fhirbin,
            "direct": direct,
            "direct_method": (
                "botocore multipart upload of the same file straight to the S3 server: "
                "8 MiB parts, 4 in flight (threads), SigV4 payload signing as over any plain-HTTP "
                "endpoint, checksums when_required; timed from create to complete"
            ),
            "fresh_content": "every run uploads new content (first 16 bytes rewritten)",
            "ratio": ratio(fhirbin["median"], direct["median"]),
            "ratio_runs": [ratio(f, d) for f, d in zip(fhirbin_runs, direct_runs, strict=True)],
            "rss": worst(rss),
            "rss_runs_mib": [round(r.growth / MIB, 1) for r in rss],
        }

    def download(self) -> dict[str, Any]:
        cfg, fb = self.cfg, self.fhirbin
        size = cfg.scaleout_size
        path = f"/fhir/Binary/{self.ids['large']}"
        direct = self.scale.presigned_get(self.scale.client(), self.direct_key)
        s3_port = self.scale.s3_port
        fhirbin_runs: list[float] = []
        direct_runs: list[float] = []
        rss: list[RssReport] = []
        log(f"scale-out download {human_size(size)}: warm-up (unmeasured)")
        expect(probe(fb.port, path, self.auth()), 200, "scale-out warm-up download", size)
        expect(probe(s3_port, direct), 200, "direct S3 warm-up download", size)
        for i in range(cfg.runs):
            log(f"scale-out download {human_size(size)}: run {i + 1}/{cfg.runs}")
            auth = self.auth()
            with RssSampler(fb.server) as sampler:
                answer = probe(fb.port, path, auth)
            rss.append(sampler.report())
            expect(answer, 200, "scale-out download", size)
            fhirbin_runs.append(mib_s(size, answer.seconds))
            answer = probe(s3_port, direct)
            expect(answer, 200, "direct S3 download", size)
            direct_runs.append(mib_s(size, answer.seconds))
        fhirbin, direct_s = spread(fhirbin_runs), spread(direct_runs)
        return {
            "fhirbin": fhirbin,
            "direct": direct_s,
            "direct_method": (
                "presigned GET of an S3 object holding the same bytes, straight from the S3 "
                "server, with the same client (bench/client.py)"
            ),
            "ratio": ratio(fhirbin["median"], direct_s["median"]),
            "ratio_runs": [ratio(f, d) for f, d in zip(fhirbin_runs, direct_runs, strict=True)],
            "rss": worst(rss),
            "rss_runs_mib": [round(r.growth / MIB, 1) for r in rss],
        }


Target = tuple[str, str, str, float, Callable[[dict[str, Any]], float | None], str]


def _get(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    """The value at ``keys`` in the measurements, None when a key is missing."""
    return lambda m: report.dig(m, keys)


#: (key, what, op, bound, value in the measurements, issue). Issue 11's targets are ratios to
#: nginx's 1 KiB read in the same rounds (ratio of the medians; p99: median of the runs' p99s).
TARGETS: list[Target] = [
    (
        "small_raw_ratio",
        "small authenticated raw read, req/s vs nginx",
        ">=",
        0.25,
        _get("small_raw", "ratio"),
        "11",
    ),
    (
        "small_raw_p99_ms",
        "small raw read p99 at 64 connections, ms",
        "<",
        15.0,
        _get("small_raw", "fhirbin", "p99_ms", "median"),
        "11",
    ),
    (
        "fhir_json_read_ratio",
        "FHIR JSON 1 KiB read, req/s vs nginx's 1 KiB read",
        ">=",
        0.10,
        _get("fhir_json_read", "ratio"),
        "11",
    ),
    (
        "search_id_ratio",
        "search GET ?_id=, req/s vs nginx's 1 KiB read",
        ">=",
        0.10,
        _get("search_id", "ratio"),
        "11",
    ),
    (
        "search_id_p99_ms",
        "search GET ?_id= p99 at 64 connections, ms",
        "<",
        30.0,
        _get("search_id", "fhirbin", "p99_ms", "median"),
        "11",
    ),
    (
        "download_small_ratio",
        "native download of {download_size}, MiB/s vs nginx",
        ">=",
        0.75,
        _get("download_small", "ratio"),
        "11",
    ),
    (
        "download_ratio",
        "native download of {size}, MiB/s vs nginx",
        ">=",
        0.75,
        _get("download", "ratio"),
        "11",
    ),
    (
        "download_rss_growth_mib",
        "peak RSS growth while downloading, MiB",
        "<",
        64.0,
        _get("download", "rss", "growth_mib"),
        "5",
    ),
    (
        "upload_rss_growth_mib",
        "peak RSS growth while uploading, MiB",
        "<",
        64.0,
        _get("upload", "rss", "growth_mib"),
        "5",
    ),
    (
        "fhir_json_rss_growth_mib",
        "peak RSS growth serving the FHIR JSON form, MiB",
        "<",
        64.0,
        _get("fhir_json_large", "rss", "growth_mib"),
        "5",
    ),
    (
        "upload_ratio",
        "large upload, MiB/s vs cp + fsync on the same disk",
        ">=",
        0.50,
        _get("upload", "ratio"),
        "5",
    ),
]


SCALEOUT_TARGETS: list[Target] = [
    (
        "scaleout_small_raw_ratio",
        "scale-out small authenticated raw read, req/s vs nginx",
        ">=",
        0.15,
        lambda m: m["small_raw"]["ratio"],
        "scale-out",
    ),
    (
        "scaleout_search_id_ratio",
        "scale-out search _id, req/s vs nginx's 1 KiB read",
        ">=",
        0.05,
        lambda m: m["search_id"]["ratio"],
        "scale-out",
    ),
    (
        "scaleout_download_ratio",
        "scale-out large download, MiB/s vs a direct S3 GET",
        ">=",
        0.60,
        lambda m: m["download"]["ratio"],
        "scale-out",
    ),
    (
        "scaleout_download_rss_growth_mib",
        "scale-out peak RSS growth while downloading, MiB",
        "<",
        64.0,
        lambda m: m["download"]["rss"]["growth_mib"],
        "scale-out",
    ),
    (
        "scaleout_upload_ratio",
        "scale-out large upload, MiB/s vs a direct S3 multipart upload",
        ">=",
        0.50,
        lambda m: m["upload"]["ratio"],
        "scale-out",
    ),
    (
        "scaleout_upload_rss_growth_mib",
        "scale-out peak RSS growth while uploading, MiB",
        "<",
        64.0,
        lambda m: m["upload"]["rss"]["growth_mib"],
        "scale-out",
    ),
]


def check_targets(
    measurements: dict[str, Any],
    scaleout: dict[str, Any] | None = None,
    sizes: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every target's value and whether it is met; ``sizes`` fills the names' {size} and
    {download_size}."""
    out = []
    checks = [(t, measurements) for t in TARGETS] if measurements else []
    checks += [(t, scaleout) for t in SCALEOUT_TARGETS] if scaleout else []
    for (key, what, op, bound, get, issue), source in checks:
        value = get(source)
        met = None if value is None else (value >= bound if op == ">=" else value < bound)
        out.append(
            {
                "key": key,
                "what": what.format_map(
                    dict(sizes or {"size": "--size", "download_size": "--download-size"})
                ),
                "op": op,
                "target": bound,
                "value": value,
                "met": met,
                "issue": issue,
            }
        )
    return out


def wrk_notes(
    measurements: dict[str, Any], scaleout: dict[str, Any] | None, notes: list[str]
) -> None:
    def check(name: str, result: dict[str, Any]) -> None:
        if result["error_count"]:
            notes.append(f"{name}: wrk counted errors {result['errors']} (status = non-2xx/3xx).")

    if scaleout:
        for key, label in (("small_raw", "small raw read"), ("search_id", "search _id")):
            for i, result in enumerate(scaleout[key]["fhirbin"]["wrk"], 1):
                check(f"scale-out {label}, run {i}", result)
        for i, result in enumerate(scaleout["small_raw"]["nginx"]["wrk"], 1):
            check(f"scale-out small read, nginx, run {i}", result)
    if not measurements:
        return
    for key in SMALL_READS:
        for i, result in enumerate(measurements[key]["fhirbin"]["wrk"], 1):
            check(f"{key.replace('_', ' ')}, run {i}", result)
    for i, result in enumerate(measurements["small_raw"]["nginx"]["wrk"], 1):
        check(f"small read, nginx, run {i}", result)
    check("Range reads, fhirbin", measurements["range"]["fhirbin"])
    check("Range reads, nginx", measurements["range"]["nginx"])


def run(cfg: Config) -> tuple[dict[str, Any], dict[str, Path]]:
    for tool in (cfg.nginx, cfg.wrk, cfg.fhirbin):
        if not (Path(tool).is_file() and os.access(tool, os.X_OK)):
            raise HarnessError(f"{tool} not found: run bench/setup.sh (make bench does) first")
    started = datetime.now(UTC)
    commit = git_commit(REPO)
    stem = report.file_stem(started.isoformat(timespec="seconds"), commit)
    log("checking how busy the machine is (1 s)")
    load_before = load_info(1.0)
    other_cpu = OtherCpu()
    tmp = BENCH / "tmp" / f"run-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    tmp.mkdir(parents=True)
    servers: list[ManagedProcess] = []
    notes: list[str] = []
    finished = False
    scale: ScaleOut | None = None
    measurements: dict[str, Any] = {}
    scaleout: dict[str, Any] | None = None
    profile: dict[str, Any] = {}
    workers_via = ""
    server_processes = 0
    try:
        log(f"writing test files to {tmp / 'www'}")
        files = make_files(tmp / "www", cfg)
        sync_disk()
        log(f"starting nginx ({cfg.workers} workers)")
        nginx, nginx_port = start_nginx(cfg, tmp / "nginx", tmp / "www", cfg.workers)
        servers.append(nginx)
        if "embedded" in cfg.backends:
            log(f"embedded: starting fhirbin ({cfg.workers} workers) on SQLite + a folder")
            fhirbin = start_fhirbin(cfg, tmp / "fhirbin-data", tmp / "fhirbin.log")
            servers.append(fhirbin.server)
            workers_via = fhirbin.workers_via
            measurements, profile, server_processes = measure_embedded(
                cfg, tmp, nginx_port, fhirbin, files, notes, stem
            )
            log("embedded: stopping fhirbin")
            fhirbin.server.stop()
        if "scaleout" in cfg.backends:
            log("scale-out: starting PostgreSQL and SeaweedFS")
            scale = ScaleOut(tmp / "scaleout")
            scale.start()
            log(f"scale-out: starting fhirbin ({cfg.workers} workers) on PostgreSQL + S3")
            fhirbin_so = start_fhirbin(
                cfg,
                tmp / "fhirbin-scaleout-data",
                tmp / "fhirbin-scaleout.log",
                extra_env=scale.fhirbin_env(),
                name="fhirbin-scaleout",
            )
            servers.append(fhirbin_so.server)
            workers_via = workers_via or fhirbin_so.workers_via
            scaleout = measure_scaleout(cfg, nginx_port, fhirbin_so, scale, files, tmp, notes)
            server_processes = server_processes or scaleout["fhirbin_processes"]
        finished = True
    finally:
        for server in reversed(servers):
            log(f"stopping {server.name}")
            server.stop()
        if scale is not None:
            log("scale-out: stopping SeaweedFS and PostgreSQL")
            scale.close()
        if cfg.keep_tmp:
            log(f"kept {tmp}")
        elif finished:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            # Keep the logs (fhirbin.log, nginx/error.log) to debug from; drop the bulky data.
            for bulky in ("www", "fhirbin-data", "fhirbin-scaleout-data", "copy", "scaleout"):
                shutil.rmtree(tmp / bulky, ignore_errors=True)
            log(f"logs kept in {tmp}")
    return finish(
        cfg,
        started,
        commit,
        load_before,
        other_cpu,
        notes,
        measurements,
        scaleout,
        profile,
        workers_via,
        server_processes,
    )


def measure_embedded(
    cfg: Config,
    tmp: Path,
    nginx_port: int,
    fhirbin: Fhirbin,
    files: Files,
    notes: list[str],
    stem: str,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The embedded configuration's measurements, its profile and its process count."""
    processes = wait_for_workers(fhirbin.server, cfg.workers)
    if processes < cfg.workers + 1:
        notes.append(
            f"fhirbin runs {processes} process(es) for {cfg.workers} workers asked "
            f"(via {fhirbin.workers_via})."
        )
    bench = Run(
        cfg=cfg,
        tmp=tmp,
        nginx_port=nginx_port,
        fhirbin=fhirbin,
        files=files,
        wrk=Wrk(cfg, tmp / "wrk"),
        notes=notes,
    )
    measurements: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    bench.setup_small()
    measurements["upload"] = bench.upload()
    measurements.update(bench.small_reads())
    if cfg.profile:
        profile = bench.profile(cfg.results_dir, stem)
    measurements["token_endpoint"] = bench.token_endpoint()
    measurements.update(bench.downloads())
    measurements["fhir_json_large"] = bench.fhir_json_large()
    measurements["range"] = bench.range_reads()
    log("scraping fhirbin's /metrics")
    exposition = fhirbin.metrics()
    raw = cfg.results_dir / f"{stem}-metrics.txt"
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    raw.write_text(exposition)
    measurements["metrics"] = {"raw": raw.name, **scrape.summarize(exposition)}
    return measurements, profile, len(fhirbin.server.processes())


def measure_scaleout(
    cfg: Config,
    nginx_port: int,
    fhirbin: Fhirbin,
    scale: ScaleOut,
    files: Files,
    tmp: Path,
    notes: list[str],
) -> dict[str, Any]:
    """The scale-out configuration's measurements, with how it was set up."""
    processes = wait_for_workers(fhirbin.server, cfg.workers)
    bench = ScaleRun(
        cfg=cfg,
        nginx_port=nginx_port,
        fhirbin=fhirbin,
        scale=scale,
        files=files,
        wrk=Wrk(cfg, tmp / "wrk"),
        notes=notes,
    )
    bench.setup_small()
    measurements: dict[str, Any] = {"upload": bench.upload()}
    measurements.update(bench.small_reads())
    measurements["download"] = bench.download()
    return {
        "setup": {**scale.describe(), "size": cfg.scaleout_size},
        "fhirbin_processes": processes,
        "measurements": measurements,
    }


def finish(
    cfg: Config,
    started: datetime,
    commit: str | None,
    load_before: dict[str, Any],
    other_cpu: OtherCpu,
    notes: list[str],
    measurements: dict[str, Any],
    scaleout: dict[str, Any] | None,
    profile: dict[str, Any],
    workers_via: str,
    server_processes: int,
) -> tuple[dict[str, Any], dict[str, Path]]:
    during = other_cpu.percent()
    load_after = load_info(1.0)
    scaleout_m = scaleout["measurements"] if scaleout else None
    wrk_notes(measurements, scaleout_m, notes)
    if (
        during["other_cpu_percent"] > BUSY_PERCENT
        or load_before["cpu_busy_percent"] > BUSY_PERCENT
        or during["steal_percent"] > BUSY_PERCENT
    ):
        notes.append(
            "The machine was not idle: other processes used "
            f"{during['other_cpu_percent']:g}% of the CPUs during the run "
            f"({load_before['cpu_busy_percent']:g}% in the second before it; "
            f"load average {load_before['loadavg'][0]:g} before"
            + (
                f"; hypervisor steal {during['steal_percent']:g}%"
                if during["steal_percent"] >= 1
                else ""
            )
            + "). Client and servers had less CPU than the machine has, so absolute numbers "
            "are low and ratios noisier; compare ratios from a quiet run."
        )
    results: dict[str, Any] = {
        # 2: "backends" and "scaleout" added; "measurements" may be {}. 3: small reads and
        # downloads as alternating runs (rounds.py), "download_small", "metrics", "profiles".
        "schema": 3,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "label": cfg.label,
        "machine": machine_info(),
        "load": {"before": load_before, "during": during, "after": load_after},
        "versions": versions(cfg.nginx, cfg.wrk),
        "config": {
            "size": cfg.size,
            "json_size": cfg.json_size,
            "slice": cfg.slice,
            "duration_s": cfg.duration,
            "warmup_s": cfg.warmup,
            "wrk_threads": cfg.threads,
            "wrk_connections": cfg.connections,
            "wrk_timeout_s": cfg.wrk_timeout,
            "runs": cfg.runs,
            "fhirbin_workers": cfg.workers,
            "fhirbin_workers_via": workers_via,
            "fhirbin_processes": server_processes,
            "nginx_workers": cfg.workers,
            "large_transfer_client": (
                "bench/client.py: one HTTP/1.1 request per connection, uploads with sendfile, "
                "downloads into a reused 1 MiB buffer; time = connect to last byte"
            ),
            "large_transfer_statistic": "median of runs (best also stored)",
            "download_size": cfg.download_size,
            "small_read_statistic": (
                "median of --runs wrk runs, rounds alternating nginx and every fhirbin figure"
            ),
        },
        "backends": list(cfg.backends),
        "measurements": measurements,
        "scaleout": scaleout,
        "targets": check_targets(
            measurements,
            scaleout_m,
            {"size": human_size(cfg.size), "download_size": human_size(cfg.download_size)},
        ),
        "notes": notes,
        "profiles": profile or None,
    }
    paths = report.write(results, cfg.results_dir)
    return results, paths


class Interrupted(KeyboardInterrupt):
    pass


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the ``finally`` that stops the servers runs."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.render is not None:
        results = json.loads(cfg.render.read_text())
        paths = report.write(results, cfg.render.parent)
        print(report.markdown(results, chart_name=paths["png"].name))
        return 0
    try:
        with signals_as_interrupts():
            results, paths = run(cfg)
    except KeyboardInterrupt:
        log("interrupted; every process the harness started has been stopped")
        return 130
    except (HarnessError, HttpError) as exc:
        log(f"FAILED: {exc}")
        return 2
    print(report.markdown(results, chart_name=paths["png"].name))
    for kind, path in paths.items():
        log(f"wrote {kind}: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
