"""``fhirbin`` with some of granian's options replaced, for bench/downloads.py only.

``BENCH_GRANIAN`` is a JSON object of keyword arguments of ``granian.Granian`` that replace
those ``fhirbin serve`` passes (src/fhirbin/cli.py); ``http1_settings.<field>`` replaces one
field of its HTTP1Settings, ``runtime_mode`` takes ``auto``, ``st`` or ``mt``. Every other
argument and every command behave as ``fhirbin``'s own::

    BENCH_GRANIAN='{"runtime_threads": 2}' .venv/bin/python bench/granian_serve.py serve ...

It measures options without changing cli.py's defaults; nothing in fhirbin imports it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import granian
from granian.constants import RuntimeModes

from fhirbin import cli


def overrides(kwargs: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    for name, value in wanted.items():
        if name.startswith("http1_settings."):
            field = name.split(".", 1)[1]
            out["http1_settings"] = dataclasses.replace(out["http1_settings"], **{field: value})
        elif name == "runtime_mode":
            out[name] = RuntimeModes(value)
        else:
            out[name] = value
    return out


def main() -> None:
    wanted: dict[str, Any] = json.loads(os.environ.get("BENCH_GRANIAN") or "{}")
    original = granian.Granian.__init__

    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **overrides(kwargs, wanted))

    granian.Granian.__init__ = patched  # type: ignore[method-assign]
    cli.main()


if __name__ == "__main__":
    main()
