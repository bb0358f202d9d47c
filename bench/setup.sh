#!/usr/bin/env bash
# Installs what the benchmark needs, only what is missing. Safe to run repeatedly.
#   Debian: nginx (the yardstick), wrk (the load generator), curl
#   venv:   psutil (RSS sampling), matplotlib (the ratio chart), py-spy (only used by --profile)
# Usage: bench/setup.sh [VENV]   (default: .venv next to this folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../.venv}"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/setup.sh: installing Debian packages: ${missing[*]}" >&2
  # Debian's nginx package starts a system-wide nginx on port 80 after installing unless a
  # policy-rc.d forbids it; the benchmark runs its own, so forbid it for the duration.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  cleanup() { [ -n "$created_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d; return 0; }
  trap cleanup EXIT
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "bench/setup.sh: no virtualenv at $venv (run 'make setup' first)" >&2
  exit 1
fi
pymissing=()
"$venv/bin/python" -c 'import psutil' 2>/dev/null || pymissing+=("psutil>=5.9")
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null || pymissing+=("matplotlib>=3.7")
[ -x "$venv/bin/py-spy" ] || pymissing+=("py-spy>=0.3.14")
if [ ${#pymissing[@]} -gt 0 ]; then
  echo "bench/setup.sh: pip-installing into $venv: ${pymissing[*]}" >&2
  "$venv/bin/pip" install --quiet "${pymissing[@]}"
fi
