#!/usr/bin/env bash
# Puts podman's quadlet generator at /opt/flightctl-test/quadlet/quadlet for tests/deploy/
# (test_quadlets.py checks the units with it), unless the host's podman has one
# (/usr/libexec/podman/quadlet, podman 4.4+). Debian 12's podman 4.3 has none, so it is taken
# from Debian trixie's podman package: only that one binary is extracted from
# the .deb, the package is not installed (it would replace the host's podman). Trust chain:
# InRelease signed by Debian's archive key (gpgv, debian-archive-keyring) -> SHA256 of the
# Packages index -> SHA256 of the .deb. The current Filename and SHA256 are read from the
# index, so a new Debian revision of the package is picked up instead of a pinned one that
# may vanish from the mirror. Safe to run repeatedly (nothing is fetched once it is there).
set -euo pipefail
dest="${FLIGHTCTL_QUADLET_DIR:-/opt/flightctl-test/quadlet}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=trixie
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

[[ -x /usr/libexec/podman/quadlet ]] && exit 0
[[ -x "$dest/quadlet" ]] && "$dest/quadlet" -version >/dev/null 2>&1 && exit 0
fail() { echo "fetch-quadlet.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "podman's quadlet generator is missing: run this as root to put it in $dest"
for tool in curl gpgv xz dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || fail "$tool is needed to fetch the quadlet generator"
done
[[ -f $keyring ]] || fail "$keyring is missing (apt-get install debian-archive-keyring)"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
get() {
  curl -fsS --retry 2 -o "$work/$2" "$mirror/$1" ||
    fail "cannot download $mirror/$1 (set DEBIAN_MIRROR to a reachable Debian mirror)"
}
get "dists/$suite/InRelease" InRelease
gpgv --keyring "$keyring" --output "$work/Release" "$work/InRelease" 2>/dev/null ||
  fail "the signature of $suite's InRelease does not verify with $keyring"
get "dists/$suite/main/binary-$arch/Packages.xz" Packages.xz
index_sum="$(awk -v f="main/binary-$arch/Packages.xz" '/^SHA256:/{s=1; next} /^[^ ]/{s=0}
  s && $3 == f {print $1}' "$work/Release")"
[[ -n $index_sum ]] && echo "$index_sum  $work/Packages.xz" | sha256sum -c --quiet ||
  fail "Packages.xz of $suite/$arch does not match the signed Release file"
read -r filename deb_sum < <(xz -dc "$work/Packages.xz" | awk '
  /^Package: /{p = ($2 == "podman")} p && /^Filename: /{f=$2} p && /^SHA256: /{s=$2}
  /^$/ && p && f {print f, s; exit}')
[[ -n ${filename:-} && -n ${deb_sum:-} ]] || fail "no podman package for $arch in $suite's index"
get "$filename" podman.deb
echo "$deb_sum  $work/podman.deb" | sha256sum -c --quiet || fail "$filename: SHA256 mismatch"
dpkg-deb --fsys-tarfile "$work/podman.deb" | tar -x -C "$work" ./usr/libexec/podman/quadlet
install -d -m 0755 "$dest"
install -m 0755 "$work/usr/libexec/podman/quadlet" "$dest/quadlet"
echo "$filename $deb_sum" > "$dest/SOURCE"
echo "podman's quadlet generator $("$dest/quadlet" -version) from $filename is in $dest"
