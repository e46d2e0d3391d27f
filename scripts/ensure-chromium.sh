#!/usr/bin/env bash
# Install Debian's Chromium for the dashboard's browser tests if it is missing (test tools cannot
# download browsers here; playwright-core drives this one through its executablePath).
set -euo pipefail
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-chromium: $CHROMIUM is missing; install it with: sudo apt-get install chromium" >&2
  exit 1
fi
echo "ensure-chromium: installing chromium"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
