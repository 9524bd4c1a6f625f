#!/bin/sh
# Refresh the web console's vendored terminal (ui/static/ui/vendor/xterm/) from the npm
# registry: pinned versions, each tarball checked against its pinned sha512 integrity, then
# the files the page loads and the licences copied out and recorded in VERSIONS. Run by hand
# when upgrading (needs npm); the product and its tests never fetch anything (docs/ui.md).
set -eu
XTERM=6.0.0
XTERM_SHA512=TQwDdQGtwwDt+2cgKDLn0IRaSxYu1tSUjgKarSDkUM0ZNiSRXFpjxEsvc/Zgc5kq5omJ+V0a8/kIM2WD3sMOYg==
FIT=0.11.0
FIT_SHA512=jYcgT6xtVYhnhgxh3QgYDnnNMYTcf8ElbxxFzX0IZo+vabQqSPAjC3c1wJrKB5E19VwQei89QCiZZP86DCPF7g==

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/ui/static/ui/vendor/xterm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

fetch() {  # package version sha512 -> unpacked in ./$4
    npm pack --silent "$1@$2" >/dev/null
    tarball=$(ls -- *.tgz)
    got=$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)
    if [ "$got" != "$3" ]; then
        echo "$1@$2: integrity sha512-$got, expected sha512-$3" >&2
        exit 1
    fi
    mkdir "$4"
    tar xzf "$tarball" -C "$4" --strip-components=1
    rm "$tarball"
}

fetch @xterm/xterm "$XTERM" "$XTERM_SHA512" xterm
fetch @xterm/addon-fit "$FIT" "$FIT_SHA512" fit
mkdir -p "$out"
cp xterm/lib/xterm.js xterm/css/xterm.css "$out/"
cp xterm/LICENSE "$out/LICENSE"
cp fit/lib/addon-fit.js "$out/addon-fit.js"
cp fit/LICENSE "$out/LICENSE.addon-fit"
cd "$out"
{
    echo "# Vendored by scripts/vendor-xterm.sh; tests/ui/test_terminal_browser.py checks the sums."
    echo "@xterm/xterm $XTERM sha512-$XTERM_SHA512"
    echo "@xterm/addon-fit $FIT sha512-$FIT_SHA512"
    sha256sum xterm.js xterm.css addon-fit.js LICENSE LICENSE.addon-fit
} > VERSIONS
cat VERSIONS
