package settings

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// OffsiteSchedule says when the latest backup is copied to the off-site repository.
type OffsiteSchedule string

// Off-site schedules: after every committed backup, at most once a day (after the first
// backup of the day), or only when asked (`snapback offsite push`).
const (
	OffsiteAfterCommit OffsiteSchedule = "after_commit"
	OffsiteDaily       OffsiteSchedule = "daily"
	OffsiteManual      OffsiteSchedule = "manual"
)

// OffsiteKeep is the retention of off-site snapshots, as restic `forget --keep-*` rules
// applied to each device's snapshots; 0 = rule not set. With no rule set nothing is removed.
type OffsiteKeep struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
}

// Offsite configures copies of the backups in a restic repository. The repository password is
// not here: it lives in the OS keychain (`snapback offsite init`).
type Offsite struct {
	// Repository is what restic accepts as -r: a folder, sftp:user@host:/path,
	// rest:https://host:8000/, s3:..., b2:..., azure:..., gs:..., swift:..., rclone:remote:path.
	// "" turns off-site copies off.
	Repository string
	Schedule   OffsiteSchedule
	// LimitUploadKiB caps the upload in KiB/s (restic --limit-upload); 0 = no limit.
	LimitUploadKiB int
	Keep           OffsiteKeep
}

// Enabled reports whether a repository is configured.
func (o Offsite) Enabled() bool { return o.Repository != "" }

// resticBackends are the repository prefixes restic knows besides a local folder.
var resticBackends = []string{"sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:"}

// checkRepository says what is wrong with a repository address, or "".
func checkRepository(repo string) string {
	if repo == "" {
		return ""
	}
	for _, p := range resticBackends {
		if strings.HasPrefix(repo, p) {
			if len(repo) == len(p) {
				return fmt.Sprintf("%q names a backend but no place in it", repo)
			}
			return ""
		}
	}
	if !filepath.IsAbs(repo) {
		return fmt.Sprintf("%q is neither an absolute folder nor a restic backend (%s)", repo, strings.Join(resticBackends, ", "))
	}
	return ""
}

// ParseRate reads an upload limit: a number of KiB/s (restic's unit), or a number with a unit
// K, KiB, KB, M, MiB, MB, G, GiB, GB (binary multiples), optionally followed by "/s". "0" or
// "" is no limit. It returns KiB/s.
func ParseRate(s string) (int, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "/s"), "ps")
	v, err := scaledNumber(s, t, "an upload rate", rateUnits)
	if err != nil {
		return 0, err
	}
	if v > 0 && v < 1 {
		v = 1
	}
	return int(v), nil
}

// rateUnits are ParseRate's units in KiB/s (binary multiples, as restic counts).
var rateUnits = map[string]float64{
	"": 1, "k": 1, "kib": 1, "kb": 1,
	"m": 1 << 10, "mib": 1 << 10, "mb": 1 << 10,
	"g": 1 << 20, "gib": 1 << 20, "gb": 1 << 20,
}

// scaledNumber reads t (what s became after trimming): a non-negative number, then
// optionally one of units' names in any letter case, and returns the number times that
// unit; an empty t is 0. what names the quantity in the error ("an upload rate", "a size").
func scaledNumber(s, t, what string, units map[string]float64) (float64, error) {
	if t == "" {
		return 0, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not %s", s, what)
	}
	m, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q", s, unit)
	}
	return v * m, nil
}

// FormatRate writes KiB/s the way ParseRate reads it.
func FormatRate(kib int) string {
	switch {
	case kib == 0:
		return "0"
	case kib%(1024*1024) == 0:
		return strconv.Itoa(kib/(1024*1024)) + "GiB/s"
	case kib%1024 == 0:
		return strconv.Itoa(kib/1024) + "MiB/s"
	}
	return strconv.Itoa(kib) + "KiB/s"
}

func validateOffsite(o Offsite, check func(key string, bad bool, problem, fix string)) {
	if p := checkRepository(o.Repository); p != "" {
		check("offsite.repository", true, p,
			"write an absolute folder (/mnt/usb/restic) or a restic address such as sftp:user@host:/srv/restic or rest:https://host:8000/")
	}
	switch o.Schedule {
	case OffsiteAfterCommit, OffsiteDaily, OffsiteManual:
	default:
		check("offsite.schedule", true, fmt.Sprintf("%q is not an off-site schedule", o.Schedule), "use after_commit, daily or manual")
	}
	check("offsite.limit_upload", o.LimitUploadKiB < 0, "negative", `use 0 (no limit) or a rate such as "2MiB/s"`)
	for _, k := range []struct {
		key string
		v   int
	}{{"offsite.keep.last", o.Keep.Last}, {"offsite.keep.hourly", o.Keep.Hourly}, {"offsite.keep.daily", o.Keep.Daily},
		{"offsite.keep.weekly", o.Keep.Weekly}, {"offsite.keep.monthly", o.Keep.Monthly}, {"offsite.keep.yearly", o.Keep.Yearly}} {
		check(k.key, k.v < 0, fmt.Sprintf("%d is negative", k.v), "use 0 (rule not set) or a positive count")
	}
}
