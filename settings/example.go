package settings

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/template"

	"go.yaml.in/yaml/v3"

	"snapback/internal/atomicfile"
)

// exampleTemplate is what `snapback config init` writes: every key, set to its default, with
// a comment saying what it does. It is rendered from Defaults() so the two cannot drift.
const exampleTemplate = `# Snapback settings. Every key is optional: a missing key takes the default shown here.
# Each top-level key can also be set from the environment, e.g. SNAPBACK_SCHEDULE_WINDOW.
# Check your edits with:  snapback config check
# Backup passwords never go in this file; use:  snapback password set --udid <UDID>

# Folder that holds <UDID>/ (the latest backup, Apple format) and Snapback.Versions/.
location: {{q .Location}}

# Which link automatic backups may use: usb, wifi or any.
transport: {{.Transport}}

schedule:
  # Automatic daily backups on or off. "Back Up Now" always works.
  enabled: {{.Schedule.Enabled}}
  # Local time span in which an automatic backup may start. "22:00-06:00" crosses midnight.
  window: {{q .Schedule.Window.String}}
  # Wait after a failed attempt; doubles with each further failure of the day (max 4h).
  retry_delay: {{dur .Schedule.RetryDelay}}
  # Retries after a failed automatic backup, per day. A passcode not entered is a failure.
  max_retries: {{.Schedule.MaxRetries}}

snapshots:
  # Keep earlier backups as snapshots (hard links share unchanged files).
  enabled: {{.Snapshots.Enabled}}
  # Delete old snapshots automatically when they take too much space.
  auto_delete: {{.Snapshots.AutoDelete}}
  # "Too much": all snapshots together above this percentage of the latest backup's size.
  max_extra_percent: {{.Snapshots.MaxExtraPercent}}
  # Never delete snapshots younger than this (units: m, h, d).
  min_age: {{dur .Snapshots.MinAge}}
  # Ask (notification) before deleting snapshots.
  ask_before_delete: {{.Snapshots.AskBeforeDelete}}
  # Optional: always keep this many daily/weekly/monthly snapshots (0 = not set).
  keep_daily: {{.Snapshots.KeepDaily}}
  keep_weekly: {{.Snapshots.KeepWeekly}}
  keep_monthly: {{.Snapshots.KeepMonthly}}

# Backup encryption on the device: keep (leave as is), on, or off.
encryption: {{.Encryption}}

conditions:
  # Minimum battery percentage for an automatic backup (0 = any).
  min_battery: {{.Conditions.MinBattery}}
  # Only back up automatically while the device is charging.
  require_charging: {{.Conditions.RequireCharging}}

notifications:
  passcode: {{.Notifications.Passcode}}        # the device asks for its passcode
  completed: {{.Notifications.Completed}}       # a backup finished
  failed: {{.Notifications.Failed}}          # a backup failed
  disk_missing: {{.Notifications.DiskMissing}}    # the backup disk is not mounted
  overdue: {{.Notifications.Overdue}}         # no backup for overdue_after_days
  approval: {{.Notifications.Approval}}        # snapshots wait for permission to be deleted
  # Days without a successful backup before the overdue warning (0 = never).
  overdue_after_days: {{.Notifications.OverdueAfterDays}}

# Off-site copies in a restic repository (restic must be installed). Its password is kept
# in the OS keychain, never here: create the repository with  snapback offsite init
offsite:
  # Where restic keeps the copies: a folder, sftp:user@host:/srv/restic,
  # rest:https://host:8000/, s3:..., b2:..., rclone:remote:path. Empty = no off-site copies.
  repository: {{q .Offsite.Repository}}
  # When the latest backup is copied: after_commit (after each backup), daily or manual.
  schedule: {{.Offsite.Schedule}}
  # Upload limit, e.g. "2MiB/s" or "500KiB/s" (0 = no limit).
  limit_upload: {{q (rate .Offsite.LimitUploadKiB)}}
  # Off-site snapshots to keep per device (restic forget --keep-*; 0 = rule not set).
  keep:
    last: {{.Offsite.Keep.Last}}
    hourly: {{.Offsite.Keep.Hourly}}
    daily: {{.Offsite.Keep.Daily}}
    weekly: {{.Offsite.Keep.Weekly}}
    monthly: {{.Offsite.Keep.Monthly}}
    yearly: {{.Offsite.Keep.Yearly}}
# Push alerts beyond the desktop: a list of {url, events}. url is a service URL of
# github.com/nicholas-fedor/shoutrrr (ntfy://, smtp://, telegram://, pushover://, gotify://,
# generic+https:// for webhooks...). A URL holding a token or password goes in the keychain
# (snapback alerts set NAME, then url: keyring:NAME) or in a file only you can read
# (chmod 600, then url: file:/path). events: any of passcode, completed, failed, overdue,
# disk_missing, approval_needed, damage_found; leave it out for all. Test with: snapback alerts test
alerts: []
#alerts:
#  - url: ntfy://ntfy.sh/my-secret-topic-name
#    events: [passcode, failed, overdue]
#  - url: keyring:mail

# Dead-man's switch (healthchecks.io style): URLs fetched when a backup starts, succeeds and
# fails, so an outside monitor notices when backups stop. Empty is off; keyring:/file: work too.
pings:
  start: ""
  success: ""
  failure: ""

# Status page, JSON API and Prometheus /metrics, e.g. "127.0.0.1:8427". Empty is off. An
# address other than loopback requires the token that "snapback http token" prints.
http:
  listen: ""

# How Wi-Fi devices are found: auto (the mux's network devices, and Snapback browses mDNS
# for the rest), builtin (Snapback finds all itself: a Linux server or NAS needs nothing
# else), mux (only what usbmuxd/netmuxd list) or off (USB only). Host-wide only.
wifi_discovery: auto
# Folder of <UDID>.plist pair records for built-in Wi-Fi discovery ("" = /var/lib/lockdown
# on Linux, /var/db/lockdown on macOS). Host-wide only.
pair_records: ""

# After each backup, re-read a bounded slice of the stored files at idle priority and compare
# them with their recorded hashes, so damage (bit rot) is found while the device can still
# re-send the file. At most this many bytes and this percentage of a store a day, whichever
# is less; 0 in either turns the scrub off. Host-wide only.
scrub:
  max_bytes_per_day: "1GB"
  max_percent_per_day: 5

# Per-device overrides: a list (not a map: UDIDs are case-sensitive and viper folds map
# keys to lower case). Each entry takes a udid, an optional name and any key above.
devices: []
#devices:
#  - udid: 00008030-001A2B3C4D5E802E
#    name: Anna's iPhone
#    location: /mnt/backup/anna
#    transport: wifi
#    schedule:
#      window: "22:00-06:00"
#    conditions:
#      require_charging: true
`

// Example returns the commented example settings file with every key at its default.
func Example() ([]byte, error) {
	t, err := template.New("example").Funcs(template.FuncMap{
		"q":    strconv.Quote,
		"dur":  FormatDuration,
		"rate": FormatRate,
	}).Parse(exampleTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, Defaults()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ErrExists is returned by WriteExample when the file exists and force is false.
var ErrExists = errors.New("settings file already exists")

// WriteExample writes Example() to path, atomically. It refuses to replace an existing file
// unless force is set, because the user's file holds hand-written comments and choices.
func WriteExample(path string, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w (use --force to replace it)", path, ErrExists)
		}
	}
	data, err := Example()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

// MarshalYAML renders the effective settings (defaults merged, environment applied) in the
// file's own format, for `snapback config show`. Every key is written.
func (s *Settings) MarshalYAML() (any, error) {
	wifi, records := string(s.Host.WiFiDiscovery), s.Host.PairRecords
	listen := s.HTTP.Listen
	maxBytes, maxPercent := FormatBytes(s.Scrub.MaxBytesPerDay), s.Scrub.MaxPercentPerDay
	f := fileSettings{Overlay: toOverlay(s.Global), Host: fileHost{WiFiDiscovery: &wifi, PairRecords: &records},
		HTTP: &fileHTTP{Listen: &listen}, Scrub: &fileScrub{MaxBytesPerDay: &maxBytes, MaxPercentPerDay: &maxPercent}}
	for _, d := range s.Devices {
		f.Devices = append(f.Devices, fileDevice{UDID: d.UDID, Name: d.Name, Overlay: toOverlay(d.Effective)})
	}
	return f, nil
}

// YAML is MarshalYAML encoded.
func (s *Settings) YAML() ([]byte, error) {
	return yaml.Marshal(s)
}

func toOverlay(d DeviceSettings) overlay {
	str := func(s string) *string { return &s }
	b := func(v bool) *bool { return &v }
	i := func(v int) *int { return &v }
	return overlay{
		Location:  str(d.Location),
		Transport: str(string(d.Transport)),
		Schedule: &fileSchedule{
			Enabled: b(d.Schedule.Enabled), Window: str(d.Schedule.Window.String()),
			RetryDelay: str(FormatDuration(d.Schedule.RetryDelay)), MaxRetries: i(d.Schedule.MaxRetries),
		},
		Snapshots: &fileSnapshots{
			Enabled: b(d.Snapshots.Enabled), AutoDelete: b(d.Snapshots.AutoDelete),
			MaxExtraPercent: i(d.Snapshots.MaxExtraPercent), MinAge: str(FormatDuration(d.Snapshots.MinAge)),
			AskBeforeDelete: b(d.Snapshots.AskBeforeDelete), KeepDaily: i(d.Snapshots.KeepDaily),
			KeepWeekly: i(d.Snapshots.KeepWeekly), KeepMonthly: i(d.Snapshots.KeepMonthly),
		},
		Encryption: str(string(d.Encryption)),
		Conditions: &fileConditions{MinBattery: i(d.Conditions.MinBattery), RequireCharging: b(d.Conditions.RequireCharging)},
		Notifications: &fileNotifications{
			Passcode: b(d.Notifications.Passcode), Completed: b(d.Notifications.Completed),
			Failed: b(d.Notifications.Failed), DiskMissing: b(d.Notifications.DiskMissing),
			Overdue: b(d.Notifications.Overdue), Approval: b(d.Notifications.Approval),
			OverdueAfterDays: i(d.Notifications.OverdueAfterDays),
		},
		Offsite: &fileOffsite{
			Repository: str(d.Offsite.Repository), Schedule: str(string(d.Offsite.Schedule)),
			LimitUpload: str(FormatRate(d.Offsite.LimitUploadKiB)),
			Keep: &fileOffsiteKeep{Last: i(d.Offsite.Keep.Last), Hourly: i(d.Offsite.Keep.Hourly),
				Daily: i(d.Offsite.Keep.Daily), Weekly: i(d.Offsite.Keep.Weekly),
				Monthly: i(d.Offsite.Keep.Monthly), Yearly: i(d.Offsite.Keep.Yearly)},
		},
		Alerts: redactedAlerts(d.Alerts),
		// Secrets never leave through `config show`: literal URLs are redacted (Redact).
		Pings: &filePings{Start: str(Redact(d.Pings.Start)), Success: str(Redact(d.Pings.Success)), Failure: str(Redact(d.Pings.Failure))},
	}
}

func redactedAlerts(as []Alert) *[]fileAlert {
	out := []fileAlert{}
	for _, a := range as {
		out = append(out, fileAlert{URL: Redact(a.URL), Events: a.Events})
	}
	return &out
}
