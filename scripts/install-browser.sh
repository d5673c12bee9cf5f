#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the HTML-report browser test
# (tests/test_report.py). A no-op when /usr/bin/chromium already exists.
# Needs root (or sudo) and access to the Debian package mirror.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: installing chromium needs root; rerun as root or install sudo" >&2
        exit 1
    fi
fi

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium

if [ ! -x /usr/bin/chromium ]; then
    echo "error: apt-get finished but /usr/bin/chromium is missing" >&2
    exit 1
fi
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
