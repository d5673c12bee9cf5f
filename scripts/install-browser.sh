#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver for the browser tests:
# the HTML-report test (tests/test_report.py: /usr/bin/chromium) and the HYPE study test
# (tests/test_hype.py: Selenium driving /usr/bin/chromedriver). A no-op when both exist.
# Needs root (or sudo) and access to the Debian package mirror.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    echo "chromedriver already installed: $(/usr/bin/chromedriver --version 2>/dev/null || echo /usr/bin/chromedriver)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: installing chromium and chromium-driver needs root; rerun as root or install sudo" >&2
        exit 1
    fi
fi

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver

for exe in /usr/bin/chromium /usr/bin/chromedriver; do
    if [ ! -x "$exe" ]; then
        echo "error: apt-get finished but $exe is missing" >&2
        exit 1
    fi
done
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
echo "installed: $(/usr/bin/chromedriver --version 2>/dev/null || echo /usr/bin/chromedriver)"
