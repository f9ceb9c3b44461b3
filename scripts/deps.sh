#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian machine: the Debian packages of the
# real parts the tests use, and the Go tools `make lint` runs. .ci/run and `make test` both
# call it, so a fresh machine gets the same set either way. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

# One list, used for the check below and for the install.
PACKAGES=(
  libimobiledevice-utils usbmuxd          # idevicebackup2/idevicepair/ideviceinfo: independent clients
  dbus dbus-daemon gnome-keyring libsecret-tools   # a real session bus and Secret Service
  desktop-file-utils xvfb                  # desktop entries, the tray under a real X server
  ca-certificates git make file
  python3 python3-cryptography python3-aiosmtpd    # decryption oracle; a real SMTP server
  tmux                                     # the progress bar in a real pseudo-terminal
  e2fsprogs util-linux iproute2            # loop images, mounts, network namespaces
  btrfs-progs xfsprogs                     # btrfs and XFS loop images (hard links vs reflinks)
  restic rclone                            # off-site copies and a REST backend on loopback
  chromium prometheus                      # the status page in a real browser; promtool
)
# A command that proves each group is present (checked before deciding to install).
TOOLS=(idevicebackup2 idevicepair ideviceinfo dbus-run-session gnome-keyring-daemon desktop-file-validate
  Xvfb python3 tmux mkfs.ext4 mkfs.btrfs mkfs.xfs losetup ip restic rclone chromium promtool)

# `deps.sh --packages` prints the list, so .ci/run installs the very same packages.
if [ "${1:-}" = "--packages" ]; then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

missing=()
for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
# Debian's python3 (a pyenv or venv python3 earlier on PATH lacks the Debian modules).
/usr/bin/python3 -c 'import cryptography, aiosmtpd' >/dev/null 2>&1 || missing+=("python3 modules")

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: missing ${missing[*]}; installing Debian packages"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi

export PATH="$PATH:$(go env GOPATH)/bin"
command -v staticcheck >/dev/null 2>&1 || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
go mod download
