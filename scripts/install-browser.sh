#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests of `swiftcli app-ui`, when it is not there yet.
# Never downloads a browser build of its own: playwright drives this binary through executable_path.
# Prints the browser's path on success; exits 0 without installing when one is already present.
set -euo pipefail

find_browser() {
  local name
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

if path=$(find_browser); then
  echo "$path"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no chromium and no apt-get; install Chromium yourself and set SWIFTCLI_CHROMIUM" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "install-browser: chromium is missing and installing it needs root (no passwordless sudo);" \
       "run: sudo apt-get install -y chromium" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
find_browser
