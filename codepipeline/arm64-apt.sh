#!/usr/bin/env bash
# Adds arm64 to apt on CodeBuild's Ubuntu image (aws/codebuild/standard:7.0 is Ubuntu 22.04), so
# the Publish build can download the arm64 packages of the API image's base.
#
# Ubuntu serves arm64 only from the ports mirror (ports.ubuntu.com/ubuntu-ports); the default
# mirrors (archive, security) have amd64 and i386 only. `dpkg --add-architecture arm64` alone
# makes `apt-get update` fetch arm64 indexes from them and fail. So: the existing entries are
# limited to amd64 (`[arch=amd64]`, or `Architectures: amd64` in deb822 .sources files) and
# arm64 gets its own entries on the ports mirror (https://wiki.debian.org/Multiarch/HOWTO,
# "Setting up apt sources").
#
# APT_ROOT (default /) lets a test run it on a copy of /etc/apt; HIRING_APT_DRY_RUN=1 skips
# dpkg and apt-get.
set -euo pipefail

root="${APT_ROOT:-/}"
etc="${root%/}/etc/apt"
codename="${UBUNTU_CODENAME:-$(. "${root%/}/etc/os-release" && echo "${UBUNTU_CODENAME:-$VERSION_CODENAME}")}"

# One-line entries: `deb URL …` → `deb [arch=amd64] URL …`; `deb [opts] URL` → `deb [arch=amd64 opts] URL`.
for list in "$etc/sources.list" "$etc"/sources.list.d/*.list; do
  [[ -f "$list" ]] || continue
  [[ "$(basename "$list")" == "arm64-ports.list" ]] && continue
  sed -i -E \
    -e '/^deb(-src)? \[[^]]*arch=/b' \
    -e 's/^(deb(-src)?) \[([^]]*)\]/\1 [arch=amd64 \3]/' \
    -e 't' \
    -e 's/^(deb(-src)?) ([a-z0-9+]+:)/\1 [arch=amd64] \3/' \
    "$list"
done
# deb822 entries (Ubuntu 24.04's ubuntu.sources): an Architectures field after each Types line.
for sources in "$etc"/sources.list.d/*.sources; do
  [[ -f "$sources" ]] || continue
  grep -q '^Architectures:' "$sources" || sed -i -E 's/^(Types:.*)$/\1\nArchitectures: amd64/' "$sources"
done

mkdir -p "$etc/sources.list.d"
{
  for suite in "$codename" "$codename-updates" "$codename-security"; do
    echo "deb [arch=arm64] http://ports.ubuntu.com/ubuntu-ports $suite main restricted universe multiverse"
  done
} >"$etc/sources.list.d/arm64-ports.list"

if [[ "${HIRING_APT_DRY_RUN:-0}" != 1 ]]; then
  dpkg --add-architecture arm64
  apt-get update
fi
