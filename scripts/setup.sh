#!/usr/bin/env bash
# Installs everything lwrecipe and its tests need on a fresh Debian or Ubuntu machine (run as root):
# the Debian packages, then lwrecipe into a virtual environment of the distribution's own python3
# (.venv in this checkout; PEP 668 forbids pip in the system's Python), linked into /usr/local/bin
# (LWRECIPE_BIN_DIR names another directory for the link).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(
  bubblewrap patch git cpio gzip bzip2 xz-utils zstd curl nginx-light libnginx-mod-http-dav-ext ca-certificates postgresql
  clang-16 lld-16 llvm-16 nodejs chromium
  make gcc g++ cmake ninja-build python3 python3-venv perl flex bison bc rsync
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# Byte-compile the package as a wheel install would: an editable install leaves
# that to the first import, which never writes it where PYTHONDONTWRITEBYTECODE
# is set, and every command would then compile lwrecipe from source again.
.venv/bin/python -m compileall -q lwrecipe
bindir="${LWRECIPE_BIN_DIR:-/usr/local/bin}"
mkdir -p "$bindir"
ln -sfn "$PWD/.venv/bin/lwrecipe" "$bindir/lwrecipe"
