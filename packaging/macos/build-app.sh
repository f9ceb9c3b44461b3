#!/usr/bin/env bash
# Builds dist/Snapback.app on macOS (fyne.io/systray needs cgo and Cocoa, so this cannot be
# cross-built from Linux). Usage: packaging/macos/build-app.sh [version]
# Signing and notarisation (needed for Gatekeeper) are left to the release pipeline:
#   codesign --deep --options runtime -s "Developer ID Application: …" dist/Snapback.app
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(uname -s)" = Darwin ] || { echo "build-app.sh: needs macOS (cgo + Cocoa for the menu bar)" >&2; exit 2; }
version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)}
app=dist/Snapback.app
rm -rf "$app"
mkdir -p "$app/Contents/MacOS" "$app/Contents/Resources"
# A universal binary: one arm64 and one amd64 build joined with lipo.
for arch in arm64 amd64; do
  CGO_ENABLED=1 GOOS=darwin GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X main.version=$version" -o "dist/snapback-darwin-$arch" .
done
lipo -create -output "$app/Contents/MacOS/snapback" dist/snapback-darwin-arm64 dist/snapback-darwin-amd64
sed "s/@VERSION@/${version#v}/g" packaging/macos/Info.plist > "$app/Contents/Info.plist"
plutil -lint "$app/Contents/Info.plist"
# The app icon from the generated PNGs (icons/assets/app).
iconset=$(mktemp -d)/snapback.iconset
mkdir -p "$iconset"
for s in 16 32 128 256 512; do
  cp "icons/assets/app/snapback-$s.png" "$iconset/icon_${s}x${s}.png"
done
cp icons/assets/app/snapback-32.png "$iconset/icon_16x16@2x.png"
cp icons/assets/app/snapback-64.png "$iconset/icon_32x32@2x.png"
cp icons/assets/app/snapback-256.png "$iconset/icon_128x128@2x.png"
cp icons/assets/app/snapback-512.png "$iconset/icon_256x256@2x.png"
iconutil -c icns -o "$app/Contents/Resources/snapback.icns" "$iconset"
echo "built $app ($version)"
