#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the browser test (tests/test_browser.py), from Debian's packages.
# Idempotent: does nothing when both are installed. Needs root (CI containers run as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium and chromedriver already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_browser.sh: run as root (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists once, only when chromium is not known to apt yet.
apt-cache show chromium >/dev/null 2>&1 || apt-get update
apt-get install -y --no-install-recommends chromium chromium-driver
