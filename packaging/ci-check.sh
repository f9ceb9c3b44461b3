#!/usr/bin/env bash
# Packaging check for CI (.ci/run calls it as root on a fresh Debian with usbmuxd installed):
# builds the .deb, installs it with dpkg -i, runs the installed binary, validates the desktop
# files, and cross-builds windows/amd64, linux/arm64 and linux/arm (armhf) with CGO_ENABLED=0.
# The package is purged again at the end so the machine is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.0.0~ci
export PATH="$PATH:$(go env GOPATH)/bin"
for tool in dpkg dpkg-deb desktop-file-validate file; do
  command -v "$tool" >/dev/null || { echo "ci-check: $tool is required (apt-get install dpkg desktop-file-utils file)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "ci-check: dpkg -i needs root" >&2; exit 1; }

scripts/package.sh "$version"
deb=dist/snapback_${version}_amd64.deb
[ -f "$deb" ] || { echo "ci-check: $deb was not built" >&2; exit 1; }

echo "== package metadata"
# Captured first: grep -q closing a pipe early would kill the writer with SIGPIPE (pipefail).
info=$(dpkg-deb --info "$deb")
echo "$info"
grep -q "Depends: usbmuxd" <<<"$info"
grep -q "Recommends: libimobiledevice-utils" <<<"$info"
contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/snapback ./usr/share/applications/snapback.desktop ./etc/xdg/autostart/snapback.desktop \
  ./usr/lib/systemd/user/snapback.service ./usr/share/icons/hicolor/256x256/apps/snapback.png; do
  grep -q " $path\$" <<<"$contents" || { echo "ci-check: $path missing from $deb" >&2; exit 1; }
done

installed_before=$(dpkg-query -W -f='${Status}' snapback 2>/dev/null || true)
cleanup() { [[ $installed_before == *"install ok installed"* ]] || dpkg -P snapback >/dev/null 2>&1 || true; }
trap cleanup EXIT
echo "== dpkg -i"
dpkg -i "$deb"
out=$(/usr/bin/snapback --version)
echo "$out"
grep -q "$version" <<<"$out" || { echo "ci-check: installed snapback reports '$out', want $version" >&2; exit 1; }

echo "== desktop-file-validate"
desktop-file-validate /usr/share/applications/snapback.desktop /etc/xdg/autostart/snapback.desktop packaging/linux/*.desktop
if command -v systemd-analyze >/dev/null; then
  echo "== systemd-analyze verify"
  # Verified as a plain unit file: --user needs a running user manager, which CI lacks.
  systemd-analyze verify /usr/lib/systemd/user/snapback.service
fi

echo "== cross-builds (CGO_ENABLED=0, built by scripts/package.sh)"
win=dist/snapback_${version}_windows_amd64
types=$(file dist/snapback-linux-arm64 dist/snapback-linux-arm "$win/snapback.exe" "$win/snapbackw.exe")
echo "$types"
grep -q "snapback-linux-arm64: .*ARM aarch64" <<<"$types"
grep -q "snapback-linux-arm: .*32-bit .*ARM, EABI5" <<<"$types"
grep -q "snapback.exe: .*PE32+ executable (console) x86-64" <<<"$types"
grep -q "snapbackw.exe: .*PE32+ executable (GUI) x86-64" <<<"$types"
grep -q "Architecture: arm64" <<<"$(dpkg-deb --info "dist/snapback_${version}_arm64.deb")"
grep -q "Architecture: armhf" <<<"$(dpkg-deb --info "dist/snapback_${version}_armhf.deb")"
echo "ci-check: OK"
