package settings

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// Problem is one thing wrong with the settings: the key (as written in the file, e.g.
// "devices[1].schedule.window"), what is wrong, and how to fix it.
type Problem struct {
	Line    int // line in the settings file; 0 when unknown (e.g. set by the environment)
	Key     string
	Problem string
	Fix     string
}

func (p *Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s; fix: %s", p.Line, p.Key, p.Problem, p.Fix)
	}
	return fmt.Sprintf("%s: %s; fix: %s", p.Key, p.Problem, p.Fix)
}

// Validate returns every problem of the settings at once (errors.Join of *Problem), or nil.
// A device entry is checked only for the keys it sets itself, so a bad global value is
// reported once, under its own key.
func (s *Settings) Validate() error {
	probs := validateDevice(s.Global, "", nil)
	probs = append(probs, validateHTTP(s.HTTP)...)
	probs = append(probs, validateScrub(s.Scrub)...)
	for i, d := range s.Devices {
		probs = append(probs, validateDevice(d.Effective, fmt.Sprintf("devices[%d].", i), d.set)...)
	}
	return errors.Join(probs...)
}

func validateDevice(d DeviceSettings, prefix string, only map[string]bool) []error {
	var probs []error
	check := func(key string, bad bool, problem, fix string) {
		if bad && (only == nil || only[key]) {
			probs = append(probs, &Problem{Key: prefix + key, Problem: problem, Fix: fix})
		}
	}
	check("location", d.Location == "", "empty",
		"set location to the folder (or mounted disk) that should hold the backups")
	check("location", d.Location != "" && !filepath.IsAbs(d.Location), fmt.Sprintf("%q is not an absolute path", d.Location),
		"write the full path, e.g. /mnt/backup/iPhone")
	switch d.Transport {
	case TransportUSB, TransportWiFi, TransportAny:
	default:
		check("transport", true, fmt.Sprintf("%q is not a transport", d.Transport), "use usb, wifi or any")
	}
	switch d.Encryption {
	case EncryptionKeep, EncryptionOn, EncryptionOff:
	default:
		check("encryption", true, fmt.Sprintf("%q is not an encryption policy", d.Encryption), "use keep, on or off")
	}
	check("schedule.retry_delay", d.Schedule.RetryDelay < 0, "negative", `use a positive duration such as "15m"`)
	check("schedule.retry_delay", d.Schedule.RetryDelay > 0 && d.Schedule.RetryDelay < time.Minute, fmt.Sprintf("%v is under a minute", d.Schedule.RetryDelay),
		"use at least 1m; the schedule is checked once a minute")
	check("schedule.max_retries", d.Schedule.MaxRetries < 0 || d.Schedule.MaxRetries > 20, fmt.Sprintf("%d is out of range", d.Schedule.MaxRetries),
		"use a number from 0 to 20")
	check("snapshots.max_extra_percent", d.Snapshots.MaxExtraPercent < 1 || d.Snapshots.MaxExtraPercent > 10000,
		fmt.Sprintf("%d is out of range", d.Snapshots.MaxExtraPercent), "use a percentage from 1 to 10000 (iMazing uses 50)")
	check("snapshots.min_age", d.Snapshots.MinAge < 0, "negative", `use a duration such as "30d"`)
	for _, k := range []struct {
		key string
		v   int
	}{{"snapshots.keep_daily", d.Snapshots.KeepDaily}, {"snapshots.keep_weekly", d.Snapshots.KeepWeekly}, {"snapshots.keep_monthly", d.Snapshots.KeepMonthly}} {
		check(k.key, k.v < 0, fmt.Sprintf("%d is negative", k.v), "use 0 (not set) or a positive count")
	}
	check("conditions.min_battery", d.Conditions.MinBattery < 0 || d.Conditions.MinBattery > 100,
		fmt.Sprintf("%d is not a percentage", d.Conditions.MinBattery), "use a number from 0 (any charge) to 100")
	validateOffsite(d.Offsite, check)
	check("notifications.overdue_after_days", d.Notifications.OverdueAfterDays < 0 || d.Notifications.OverdueAfterDays > 365,
		fmt.Sprintf("%d is out of range", d.Notifications.OverdueAfterDays), "use 0 (off) or a number of days up to 365")
	probs = append(probs, validateAlerts(d, prefix, only)...)
	return probs
}
