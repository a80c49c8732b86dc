#!/usr/bin/env bash
# Install the Debian packages given as arguments when they are missing.
# As root: apt-get update once, then install non-interactively. Otherwise: say what is missing
# (the tests that need them skip with the reason printed).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "apt-install: not root; missing Debian packages: ${missing[*]} (tests needing them will skip)" >&2
  exit 0
fi
echo "apt-install: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
