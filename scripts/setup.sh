#!/usr/bin/env bash
# Installs everything lwrecipe and its tests need on a fresh Debian machine (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(
  bubblewrap patch git cpio gzip bzip2 xz-utils zstd curl nginx-light ca-certificates
  clang-16 lld-16 llvm-16 nodejs chromium
  make gcc g++ cmake ninja-build python3 perl flex bison bc rsync
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
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Byte-compile the package as a wheel install would: an editable install leaves
# that to the first import, which never writes it where PYTHONDONTWRITEBYTECODE
# is set, and every command would then compile lwrecipe from source again.
python3 -m compileall -q lwrecipe
