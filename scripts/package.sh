#!/usr/bin/env bash
# `make package`: builds every package this machine can build into dist/.
#   linux/amd64 .deb (nfpm v2.45.2; installed with `go install` if missing)
#   cross-build checks, CGO_ENABLED=0: windows/amd64 (zip via packaging/windows/build.sh) and
#   linux/arm64 and linux/arm (GOARM=6, .deb armhf: runs on ARMv6 and v7, so 32-bit Raspberry Pi OS
#   on every Pi and ARMv7 NAS boxes), .debs as well
#   macOS .app only on macOS (fyne.io/systray needs cgo + Cocoa there)
# Usage: scripts/package.sh [version]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)}}
# Debian versions must start with a digit; git describe may give "v1.2.0" or a bare hash.
debversion=${version#v}
[[ $debversion =~ ^[0-9] ]] || debversion="0.0.0~git${debversion}"
mkdir -p dist
export PATH="$PATH:$(go env GOPATH)/bin"

nfpm_bin() {
  if ! command -v nfpm >/dev/null; then
    echo "== installing nfpm v2.45.2" >&2
    GOFLAGS= go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2 >&2
  fi
  command -v nfpm
}

build_linux() { # GOARCH [nfpm arch] [Debian arch] → dist/snapback_<version>_<Debian arch>.deb
  local arch=$1 bin=dist/snapback-linux-$1 nfpmarch=${2:-$1} deb=${3:-$1}
  echo "== linux/$arch binary"
  # GOARM counts for arm only: ARMv6 code runs on v6 and v7 alike.
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=6 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin" .
  echo "== linux/$arch .deb"
  mkdir -p dist/stage
  cp "$bin" dist/stage/snapback
  VERSION=$debversion ARCH=$nfpmarch "$(nfpm_bin)" package --config packaging/nfpm.yaml --packager deb \
    --target "dist/snapback_${debversion}_${deb}.deb"
}

build_linux amd64
build_linux arm64
build_linux arm arm6 armhf
echo "== windows/amd64"
packaging/windows/build.sh "$version" amd64
if [ "$(uname -s)" = Darwin ]; then
  echo "== macOS .app"
  packaging/macos/build-app.sh "$version"
else
  echo "== macOS .app skipped (needs macOS: cgo + Cocoa)"
fi
ls -l dist
