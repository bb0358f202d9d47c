#!/usr/bin/env bash
# Installs the one Debian package `fhirbin serve` needs, libmagic1 (content sniffing through
# python-magic, src/fhirbin/security/sniff.py), when it is missing. Prints nothing otherwise.
set -euo pipefail
pkg=libmagic1
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian package: $pkg" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq &&
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg"; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
