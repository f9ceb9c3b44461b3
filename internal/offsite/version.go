package offsite

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// Version is a restic release number.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

// MinVersionText is the oldest restic Snapback drives: 0.14.0 (Debian 12) is the release the
// tests run against, and the first whose `init` writes repository format 2 (compressed), whose
// `backup --json` summary names the new snapshot and whose `forget` takes `--group-by ”`.
const MinVersionText = "0.14.0"

// MinVersion is MinVersionText parsed.
func MinVersion() Version {
	v, _ := ParseVersion("restic " + MinVersionText)
	return v
}

const installHint = "install restic " + MinVersionText + " or newer: `sudo apt install restic` (Debian, Ubuntu), " +
	"`sudo dnf install restic` (Fedora), `brew install restic` (macOS), `winget install restic.restic` or " +
	"`scoop install restic` (Windows); or put a restic binary on PATH"

var versionRe = regexp.MustCompile(`restic (\d+)\.(\d+)\.(\d+)`)

// ParseVersion reads the output of `restic version` ("restic 0.14.0 compiled with go1.19.8
// on linux/amd64"; development builds say "restic 0.16.4-dev (compiled manually)").
func ParseVersion(out string) (Version, error) {
	m := versionRe.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("no restic version in %q", out)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// CheckVersion finds restic and returns its version, or an *Error of KindMissing or KindTooOld
// that names the version needed and how to install it.
func (r *Restic) CheckVersion(ctx context.Context) (Version, error) {
	bin, err := exec.LookPath(r.binary())
	if err != nil {
		return Version{}, newError("version", KindMissing, "",
			fmt.Sprintf("restic (%s) was not found: %v", r.binary(), errors.Unwrap(err)), err)
	}
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return Version{}, newError("version", KindMissing, "", fmt.Sprintf("`%s version` failed: %v", bin, err), err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, newError("version", KindTooOld, "", err.Error(), err)
	}
	if v.Less(MinVersion()) {
		return v, newError("version", KindTooOld, "",
			fmt.Sprintf("%s is restic %s; Snapback needs restic %s or newer", bin, v, MinVersionText), nil)
	}
	return v, nil
}
