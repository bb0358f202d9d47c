#!/usr/bin/env bash
# Installs the Debian packages the tests need, only those missing. Safe to run repeatedly;
# prints nothing unless it installs something (and apt's output only if that fails).
#
#   curl, openssl   the README flow tests (tests/e2e)
#   libmagic1       content sniffing (python-magic over libmagic, src/fhirbin/security/sniff.py)
#   clamav-daemon   clamd, which the screening tests start themselves with a signature database
#                   of their own (tests/clamd_support.py). The packaged clamd and freshclam
#                   services are never left running or enabled: freshclam would try to download
#                   signatures, and the tests need no system-wide clamd.
#   postgresql      the server binaries (/usr/lib/postgresql/<major>/bin) the catalogue tests use
#                   to start a private cluster of their own (tests/pg_support.py); the packaged
#                   cluster is not started (policy-rc.d below) and the tests never use it.
#   chromium        headless Chromium for the browser tests (tests/e2e/test_e2e_browser.py: an
#                   <img> through a signed URL, scripts in HTML/SVG Binaries that must not run);
#                   started by the tests themselves with --headless --dump-dom, no driver.
#   nginx           the web server tests/e2e/test_e2e_accel_redirect.py puts in front of fhirbin
#                   (FHIRBIN_ACCEL_REDIRECT, docs/deployment.md), started by the test itself on
#                   a free port with a prefix of its own; the packaged nginx service on port 80
#                   is not started (policy-rc.d below) and the tests never use it.
#   nodejs, npm     Medplum's client under node (tests/e2e/clients/medplum, npm ci from the
#                   npm registry): only when no `node` or no `npm` is on PATH, so a Node.js
#                   installed otherwise (NodeSource's, which bundles npm) is kept. Debian 12's
#                   nodejs 18 runs the pinned @medplum/core.
set -euo pipefail
needed=(curl openssl libmagic1 clamav-daemon postgresql chromium nginx)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  for pkg in nodejs npm; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# Stop, disable and (under systemd) mask the system's clamd and freshclam, so neither a reboot
# nor a package upgrade brings them back. Idempotent and cheap: runs on every call.
# Says so in one line on stderr when it changes anything.
quiet_clamav_services() {
  local unit pidfile changed=""
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for unit in clamav-daemon.socket clamav-daemon.service clamav-freshclam.service; do
      if [ "$(systemctl is-enabled "$unit" 2>/dev/null)" != "masked" ] ||
        systemctl is-active --quiet "$unit" 2>/dev/null; then
        changed="stopped, disabled and masked (systemctl unmask to undo)"
      fi
      $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
      $SUDO systemctl mask "$unit" >/dev/null 2>&1 || true
    done
  fi
  for unit in clamav-daemon clamav-freshclam; do
    [ -x "/etc/init.d/$unit" ] || continue
    if compgen -G "/etc/rc[2-5].d/S*$unit" >/dev/null; then
      changed="${changed:-disabled (update-rc.d $unit enable to undo)}"
    fi
    $SUDO update-rc.d "$unit" disable >/dev/null 2>&1 || true
  done
  # Anything started anyway (a sysvinit machine without policy-rc.d): stop it by its pid file.
  for pidfile in /run/clamav/clamd.pid /run/clamav/freshclam.pid; do
    if [ -s "$pidfile" ] && $SUDO kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      $SUDO kill "$(cat "$pidfile")" 2>/dev/null || true
      changed="${changed:-stopped}"
    fi
  done
  if [ -n "$changed" ]; then
    echo "system-deps: the system's clamd and freshclam services were $changed; the tests start their own clamd" >&2
  fi
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  log=$(mktemp)
  temp_policy=""
  cleanup() {
    rm -f "$log"
    [ -z "$temp_policy" ] || $SUDO rm -f "$temp_policy"
  }
  trap cleanup EXIT
  # Debian's policy-rc.d hook: exit 101 forbids maintainer scripts to start services, so
  # installing clamav-daemon starts neither clamd nor freshclam, and nginx no server on port
  # 80. Containers usually have one; otherwise a temporary one is put in place for the install
  # and removed afterwards.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    temp_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$temp_policy" >/dev/null
    $SUDO chmod 755 "$temp_policy"
  fi
  if ! { $SUDO apt-get update -qq &&
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
fi

if dpkg-query -W -f='${Status}' clamav-daemon 2>/dev/null | grep -q "install ok installed"; then
  quiet_clamav_services
fi
