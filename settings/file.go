package settings

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// The file format. Every field is optional (a pointer): nil means "inherit", from Defaults()
// for the top level and from the top level for a device entry. The same overlay type serves
// both, so a device can override every global key.

type overlay struct {
	Location      *string            `mapstructure:"location" yaml:"location,omitempty"`
	Transport     *string            `mapstructure:"transport" yaml:"transport,omitempty"`
	Schedule      *fileSchedule      `mapstructure:"schedule" yaml:"schedule,omitempty"`
	Snapshots     *fileSnapshots     `mapstructure:"snapshots" yaml:"snapshots,omitempty"`
	Encryption    *string            `mapstructure:"encryption" yaml:"encryption,omitempty"`
	Conditions    *fileConditions    `mapstructure:"conditions" yaml:"conditions,omitempty"`
	Notifications *fileNotifications `mapstructure:"notifications" yaml:"notifications,omitempty"`
	Offsite       *fileOffsite       `mapstructure:"offsite" yaml:"offsite,omitempty"`
	Alerts        *[]fileAlert       `mapstructure:"alerts" yaml:"alerts,omitempty"`
	Pings         *filePings         `mapstructure:"pings" yaml:"pings,omitempty"`
}

type fileOffsite struct {
	Repository  *string          `mapstructure:"repository" yaml:"repository,omitempty"`
	Schedule    *string          `mapstructure:"schedule" yaml:"schedule,omitempty"`
	LimitUpload *string          `mapstructure:"limit_upload" yaml:"limit_upload,omitempty"`
	Keep        *fileOffsiteKeep `mapstructure:"keep" yaml:"keep,omitempty"`
}

type fileOffsiteKeep struct {
	Last    *int `mapstructure:"last" yaml:"last,omitempty"`
	Hourly  *int `mapstructure:"hourly" yaml:"hourly,omitempty"`
	Daily   *int `mapstructure:"daily" yaml:"daily,omitempty"`
	Weekly  *int `mapstructure:"weekly" yaml:"weekly,omitempty"`
	Monthly *int `mapstructure:"monthly" yaml:"monthly,omitempty"`
	Yearly  *int `mapstructure:"yearly" yaml:"yearly,omitempty"`
}

type fileAlert struct {
	URL    string   `mapstructure:"url" yaml:"url"`
	Events []string `mapstructure:"events" yaml:"events,omitempty"`
}

type filePings struct {
	Start   *string `mapstructure:"start" yaml:"start,omitempty"`
	Success *string `mapstructure:"success" yaml:"success,omitempty"`
	Failure *string `mapstructure:"failure" yaml:"failure,omitempty"`
}

type fileHTTP struct {
	Listen *string `mapstructure:"listen" yaml:"listen,omitempty"`
}

type fileSchedule struct {
	Enabled    *bool   `mapstructure:"enabled" yaml:"enabled,omitempty"`
	Window     *string `mapstructure:"window" yaml:"window,omitempty"`
	RetryDelay *string `mapstructure:"retry_delay" yaml:"retry_delay,omitempty"`
	MaxRetries *int    `mapstructure:"max_retries" yaml:"max_retries,omitempty"`
}

type fileSnapshots struct {
	Enabled         *bool   `mapstructure:"enabled" yaml:"enabled,omitempty"`
	AutoDelete      *bool   `mapstructure:"auto_delete" yaml:"auto_delete,omitempty"`
	MaxExtraPercent *int    `mapstructure:"max_extra_percent" yaml:"max_extra_percent,omitempty"`
	MinAge          *string `mapstructure:"min_age" yaml:"min_age,omitempty"`
	AskBeforeDelete *bool   `mapstructure:"ask_before_delete" yaml:"ask_before_delete,omitempty"`
	KeepDaily       *int    `mapstructure:"keep_daily" yaml:"keep_daily,omitempty"`
	KeepWeekly      *int    `mapstructure:"keep_weekly" yaml:"keep_weekly,omitempty"`
	KeepMonthly     *int    `mapstructure:"keep_monthly" yaml:"keep_monthly,omitempty"`
}

type fileConditions struct {
	MinBattery      *int  `mapstructure:"min_battery" yaml:"min_battery,omitempty"`
	RequireCharging *bool `mapstructure:"require_charging" yaml:"require_charging,omitempty"`
}

type fileNotifications struct {
	Passcode         *bool `mapstructure:"passcode" yaml:"passcode,omitempty"`
	Completed        *bool `mapstructure:"completed" yaml:"completed,omitempty"`
	Failed           *bool `mapstructure:"failed" yaml:"failed,omitempty"`
	DiskMissing      *bool `mapstructure:"disk_missing" yaml:"disk_missing,omitempty"`
	Overdue          *bool `mapstructure:"overdue" yaml:"overdue,omitempty"`
	Approval         *bool `mapstructure:"approval" yaml:"approval,omitempty"`
	OverdueAfterDays *int  `mapstructure:"overdue_after_days" yaml:"overdue_after_days,omitempty"`
}

type fileDevice struct {
	UDID    string  `mapstructure:"udid" yaml:"udid"`
	Name    string  `mapstructure:"name" yaml:"name,omitempty"`
	Overlay overlay `mapstructure:",squash" yaml:",inline"`
}

type fileSettings struct {
	Overlay overlay      `mapstructure:",squash" yaml:",inline"`
	Host    fileHost     `mapstructure:",squash" yaml:",inline"`
	Devices []fileDevice `mapstructure:"devices" yaml:"devices,omitempty"`
	HTTP    *fileHTTP    `mapstructure:"http" yaml:"http,omitempty"`
	Scrub   *fileScrub   `mapstructure:"scrub" yaml:"scrub,omitempty"`
}

// Keys lists every settings key a device can override, dotted as in the file
// ("schedule.window"). The top level accepts all of them plus "devices".
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, prefix+name+".")
				continue
			}
			keys = append(keys, prefix+name)
		}
	}
	walk(reflect.TypeFor[overlay](), "")
	return keys
}

// EnvPrefix is the prefix of environment overrides: SNAPBACK_SCHEDULE_WINDOW overrides the
// global schedule.window. Device entries cannot be overridden from the environment.
const EnvPrefix = "SNAPBACK"

// EnvName returns the environment variable that overrides the global key.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load reads the settings file at path. A missing file means built-in defaults (plus
// environment overrides). Any problem - unreadable file, YAML syntax, unknown key, bad
// value - fails the whole load: the caller keeps whatever it had before.
func Load(path string) (*Settings, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		data = nil
	} else if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("settings file %s:\n%w", path, err)
	}
	return s, nil
}

// Parse reads settings from YAML bytes, applies SNAPBACK_* environment overrides and
// validates the result. The error joins one *Problem per problem found.
func Parse(data []byte) (*Settings, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	// Unmarshal only sees keys viper knows (libraries.md §4), so bind every global key.
	for _, k := range append(append(Keys(), "http.listen", "scrub.max_bytes_per_day", "scrub.max_percent_per_day"), hostKeys...) {
		if k == "alerts" {
			continue // a list; it has no environment form
		}
		if err := v.BindEnv(k); err != nil {
			return nil, err
		}
	}
	// Unknown keys, wrong types and malformed UDIDs first, with their lines; what remains
	// decodes cleanly, so its values are checked in the same run.
	clean, lines, probs, ok := checkStructure(data)
	if !ok {
		return nil, errors.Join(sortProblems(probs, lines)...)
	}
	if err := v.ReadConfig(bytes.NewReader(clean)); err != nil {
		return nil, &Problem{Key: "(file)", Problem: "not valid YAML: " + err.Error(),
			Fix: "correct the YAML syntax (indent with spaces; quote values that contain ':' or '#')"}
	}
	var f fileSettings
	if err := v.UnmarshalExact(&f); err != nil {
		probs = append(probs, decodeProblems(err))
		return nil, errors.Join(sortProblems(probs, lines)...)
	}
	s, err := build(f)
	if err != nil {
		probs = append(probs, err)
	}
	if len(probs) > 0 {
		return nil, errors.Join(sortProblems(probs, lines)...)
	}
	return s, nil
}

// decodeProblems turns mapstructure's joined errors into Problems that name their key.
func decodeProblems(err error) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			key := de.Name()
			if key == "" {
				key = "(top level)"
			}
			out = append(out, &Problem{Key: key, Problem: de.Unwrap().Error(),
				Fix: "use a key and value type from the example that `snapback config init` writes"})
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
			return
		}
		out = append(out, &Problem{Key: "(file)", Problem: e.Error(), Fix: "compare with the example that `snapback config init` writes"})
	}
	walk(err)
	return errors.Join(out...)
}

// build merges the file over the defaults and validates.
func build(f fileSettings) (*Settings, error) {
	var probs []error
	s := &Settings{}
	s.Global = apply(Defaults(), f.Overlay, "", &probs, nil)
	s.Host = applyHost(f.Host, &probs)
	if f.HTTP != nil && f.HTTP.Listen != nil {
		s.HTTP.Listen = strings.TrimSpace(*f.HTTP.Listen)
	}
	s.Scrub = DefaultScrub()
	applyScrub(&s.Scrub, f.Scrub, &probs)
	seen := map[string]int{}
	for i, d := range f.Devices {
		prefix := fmt.Sprintf("devices[%d].", i)
		if d.UDID == "" {
			probs = append(probs, &Problem{Key: prefix + "udid", Problem: "missing",
				Fix: "give every device entry its UDID (`snapback devices` lists them)"})
		} else if j, dup := seen[d.UDID]; dup {
			probs = append(probs, &Problem{Key: prefix + "udid", Problem: fmt.Sprintf("%q is also devices[%d]", d.UDID, j),
				Fix: "merge the two entries into one"})
		}
		seen[d.UDID] = i
		set := map[string]bool{}
		e := apply(s.Global, d.Overlay, prefix, &probs, set)
		e.UDID, e.Name = d.UDID, d.Name
		s.Devices = append(s.Devices, DeviceOverride{UDID: d.UDID, Name: d.Name, Effective: e, set: set})
	}
	if err := s.Validate(); err != nil {
		probs = append(probs, err)
	}
	if err := errors.Join(probs...); err != nil {
		return nil, err
	}
	return s, nil
}

// apply overlays o on base. Values that cannot be parsed are reported and leave base's
// value. set, when not nil, records which keys o sets.
func apply(base DeviceSettings, o overlay, prefix string, probs *[]error, set map[string]bool) DeviceSettings {
	mark := func(k string) {
		if set != nil {
			set[k] = true
		}
	}
	str := func(dst *string, src *string, k string) {
		if src != nil {
			*dst = *src
			mark(k)
		}
	}
	boolean := func(dst *bool, src *bool, k string) {
		if src != nil {
			*dst = *src
			mark(k)
		}
	}
	integer := func(dst *int, src *int, k string) {
		if src != nil {
			*dst = *src
			mark(k)
		}
	}
	dur := func(dst *time.Duration, src *string, k, example string) {
		if src == nil {
			return
		}
		mark(k)
		d, err := ParseDuration(*src)
		if err != nil {
			*probs = append(*probs, &Problem{Key: prefix + k, Problem: err.Error(),
				Fix: "write a duration such as " + example + " (units: m, h, d)"})
			return
		}
		*dst = d
	}
	e := base
	str(&e.Location, o.Location, "location")
	if o.Transport != nil {
		e.Transport = Transport(strings.ToLower(*o.Transport))
		mark("transport")
	}
	if o.Encryption != nil {
		e.Encryption = Encryption(strings.ToLower(*o.Encryption))
		mark("encryption")
	}
	if s := o.Schedule; s != nil {
		boolean(&e.Schedule.Enabled, s.Enabled, "schedule.enabled")
		if s.Window != nil {
			mark("schedule.window")
			w, err := ParseWindow(*s.Window)
			if err != nil {
				*probs = append(*probs, &Problem{Key: prefix + "schedule.window", Problem: err.Error(),
					Fix: `write "HH:MM-HH:MM" in local time, e.g. "09:00-23:00" or "22:00-06:00" across midnight`})
			} else {
				e.Schedule.Window = w
			}
		}
		dur(&e.Schedule.RetryDelay, s.RetryDelay, "schedule.retry_delay", `"15m"`)
		integer(&e.Schedule.MaxRetries, s.MaxRetries, "schedule.max_retries")
	}
	if s := o.Snapshots; s != nil {
		boolean(&e.Snapshots.Enabled, s.Enabled, "snapshots.enabled")
		boolean(&e.Snapshots.AutoDelete, s.AutoDelete, "snapshots.auto_delete")
		integer(&e.Snapshots.MaxExtraPercent, s.MaxExtraPercent, "snapshots.max_extra_percent")
		dur(&e.Snapshots.MinAge, s.MinAge, "snapshots.min_age", `"30d"`)
		boolean(&e.Snapshots.AskBeforeDelete, s.AskBeforeDelete, "snapshots.ask_before_delete")
		integer(&e.Snapshots.KeepDaily, s.KeepDaily, "snapshots.keep_daily")
		integer(&e.Snapshots.KeepWeekly, s.KeepWeekly, "snapshots.keep_weekly")
		integer(&e.Snapshots.KeepMonthly, s.KeepMonthly, "snapshots.keep_monthly")
	}
	if c := o.Conditions; c != nil {
		integer(&e.Conditions.MinBattery, c.MinBattery, "conditions.min_battery")
		boolean(&e.Conditions.RequireCharging, c.RequireCharging, "conditions.require_charging")
	}
	if n := o.Notifications; n != nil {
		boolean(&e.Notifications.Passcode, n.Passcode, "notifications.passcode")
		boolean(&e.Notifications.Completed, n.Completed, "notifications.completed")
		boolean(&e.Notifications.Failed, n.Failed, "notifications.failed")
		boolean(&e.Notifications.DiskMissing, n.DiskMissing, "notifications.disk_missing")
		boolean(&e.Notifications.Overdue, n.Overdue, "notifications.overdue")
		boolean(&e.Notifications.Approval, n.Approval, "notifications.approval")
		integer(&e.Notifications.OverdueAfterDays, n.OverdueAfterDays, "notifications.overdue_after_days")
	}
	if o := o.Offsite; o != nil {
		str(&e.Offsite.Repository, o.Repository, "offsite.repository")
		if o.Schedule != nil {
			e.Offsite.Schedule = OffsiteSchedule(strings.ToLower(*o.Schedule))
			mark("offsite.schedule")
		}
		if o.LimitUpload != nil {
			mark("offsite.limit_upload")
			kib, err := ParseRate(*o.LimitUpload)
			if err != nil {
				*probs = append(*probs, &Problem{Key: prefix + "offsite.limit_upload", Problem: err.Error(),
					Fix: `write 0 (no limit) or a rate such as "2MiB/s" or "500KiB/s"`})
			} else {
				e.Offsite.LimitUploadKiB = kib
			}
		}
		if k := o.Keep; k != nil {
			integer(&e.Offsite.Keep.Last, k.Last, "offsite.keep.last")
			integer(&e.Offsite.Keep.Hourly, k.Hourly, "offsite.keep.hourly")
			integer(&e.Offsite.Keep.Daily, k.Daily, "offsite.keep.daily")
			integer(&e.Offsite.Keep.Weekly, k.Weekly, "offsite.keep.weekly")
			integer(&e.Offsite.Keep.Monthly, k.Monthly, "offsite.keep.monthly")
			integer(&e.Offsite.Keep.Yearly, k.Yearly, "offsite.keep.yearly")
		}
	}
	if o.Alerts != nil {
		mark("alerts")
		e.Alerts = nil
		for _, a := range *o.Alerts {
			e.Alerts = append(e.Alerts, Alert{URL: strings.TrimSpace(a.URL), Events: slices.Clone(a.Events)})
		}
	}
	if p := o.Pings; p != nil {
		str(&e.Pings.Start, p.Start, "pings.start")
		str(&e.Pings.Success, p.Success, "pings.success")
		str(&e.Pings.Failure, p.Failure, "pings.failure")
	}
	return e
}

// ParseDuration accepts Go durations ("90m", "1h30m") and whole days ("30d"), which Go's
// own parser lacks but retention ages need.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}

// FormatDuration writes d the way ParseDuration reads it, preferring whole days.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return "0s"
	}
	return s
}
