#!/usr/bin/env bash
# Cross-builds the Windows zip from any OS (fyne.io/systray is pure Go on Windows):
#   snapback.exe   console build for the CLI (backup, devices, autostart …)
#   snapbackw.exe  GUI-subsystem build (-H=windowsgui) for the tray: no console window;
#                  `snapback autostart on` registers it in HKCU\…\Run when it sits alongside.
# Usage: packaging/windows/build.sh [version] [arch]
set -euo pipefail
cd "$(dirname "$0")/../.."
version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)}
arch=${2:-amd64}
out=dist/snapback_${version#v}_windows_$arch
rm -rf "$out" "$out.zip"
mkdir -p "$out"
export CGO_ENABLED=0 GOOS=windows GOARCH=$arch
go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/snapback.exe" .
go build -trimpath -ldflags "-s -w -H=windowsgui -X main.version=$version" -o "$out/snapbackw.exe" .
cp icons/assets/app/snapback.ico "$out/"
if command -v zip >/dev/null; then
  (cd "$(dirname "$out")" && zip -qr "$(basename "$out").zip" "$(basename "$out")")
  echo "built $out.zip"
else
  echo "built $out (zip not installed; folder only)"
fi
