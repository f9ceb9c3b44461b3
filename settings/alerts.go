package settings

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// Alert is one push channel (`alerts:` entry): a service URL for the notification library
// (ntfy://, smtp://, generic+https://, telegram://, ...) or a reference to where that URL is
// kept, and the events it receives.
//
// URL is kept as written. Tokens and SMTP passwords do not belong in the settings file:
// write `keyring:NAME` (the URL is in the OS keychain under that name, stored with
// `snapback alerts set NAME`) or `file:/abs/path` (a file readable by the owner only that holds
// the URL). A literal URL is accepted for services whose URL carries no password; it is still
// shown redacted everywhere (Redact).
type Alert struct {
	URL string
	// Events are the event kinds this channel receives; empty means all of them.
	Events []string
}

// Pings are the dead-man's-switch URLs of a device (healthchecks.io style): fetched when a
// backup starts, succeeds and fails, in that order, so an outside monitor notices when backups
// stop happening at all. Each is a literal URL or a keyring:/file: reference; empty is off.
type Pings struct {
	Start, Success, Failure string
}

// HTTP is the status page server (global only; one server per app).
type HTTP struct {
	// Listen is host:port; empty turns the server off. A non-loopback host requires the token.
	Listen string
}

// The alert event kinds, as written in the settings file.
const (
	EventPasscode        = "passcode"
	EventCompleted       = "completed"
	EventFailed          = "failed"
	EventOverdue         = "overdue"
	EventDiskMissing     = "disk_missing"
	EventApprovalNeeded  = "approval_needed"
	EventDamageFound     = "damage_found"
	alertSecretPrefix    = "alert:"
	keyringRefPrefix     = "keyring:"
	fileRefPrefix        = "file:"
	redactedPlaceholder  = "REDACTED"
	maxSecretURLFileSize = 64 << 10
)

// AlertEvents lists every event kind an alert can receive.
func AlertEvents() []string {
	return []string{EventPasscode, EventCompleted, EventFailed, EventOverdue, EventDiskMissing, EventApprovalNeeded, EventDamageFound}
}

// Wants reports whether the channel receives events of kind.
func (a Alert) Wants(kind string) bool {
	return len(a.Events) == 0 || slices.Contains(a.Events, kind)
}

var secretName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// validateURLRef checks one url/ping value and returns (problem, fix), or "" when it is fine.
func validateURLRef(v string) (string, string) {
	switch {
	case strings.HasPrefix(v, keyringRefPrefix):
		if !secretName.MatchString(strings.TrimPrefix(v, keyringRefPrefix)) {
			return fmt.Sprintf("%q is not a keychain name", v), "write keyring:NAME with letters, digits, '.', '_' or '-', e.g. keyring:ntfy"
		}
	case strings.HasPrefix(v, fileRefPrefix):
		if p := strings.TrimPrefix(v, fileRefPrefix); !strings.HasPrefix(p, "/") {
			return fmt.Sprintf("%q does not name an absolute path", v), "write file:/full/path/to/file (a file only you can read, chmod 600)"
		}
	default:
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
			return "not a service URL", "write a URL such as ntfy://ntfy.sh/my-topic, or keyring:NAME / file:/path for a URL that holds a secret"
		}
		if _, has := u.User.Password(); has {
			return "the URL contains a password", "store the URL in the keychain (`snapback alerts set NAME`) and write keyring:NAME, or in a file only you can read (chmod 600) and write file:/path"
		}
	}
	return "", ""
}

// IsSecretRef reports whether v names a keychain entry or a file rather than being a URL.
func IsSecretRef(v string) bool {
	return strings.HasPrefix(v, keyringRefPrefix) || strings.HasPrefix(v, fileRefPrefix)
}

// Redact returns v as it may be shown: a keyring:/file: reference as is (it names where the
// secret is, not the secret), a literal URL as scheme://host/REDACTED with any user, path and
// query removed (ntfy topics, webhook paths and tokens are often the secret themselves).
func Redact(v string) string {
	if v == "" || IsSecretRef(v) {
		return v
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" {
		return redactedPlaceholder
	}
	host := u.Host
	if host == "" {
		host = "host"
	}
	return u.Scheme + "://" + host + "/" + redactedPlaceholder
}

// ResolveURL returns the URL a url/ping value stands for: a literal URL itself, keyring:NAME
// from secrets, file:/path from a file that only its owner can read. The error names the
// reference (never the secret) and the fix.
func ResolveURL(ctx context.Context, v string, secrets Secrets) (string, error) {
	switch {
	case strings.HasPrefix(v, keyringRefPrefix):
		name := strings.TrimPrefix(v, keyringRefPrefix)
		if secrets == nil {
			return "", fmt.Errorf("%s: no keychain available; fix: use file:/path to a file only you can read instead", v)
		}
		s, err := secrets.Get(ctx, AlertSecretKey(name))
		if errors.Is(err, ErrSecretNotFound) {
			return "", fmt.Errorf("%s: nothing stored under this name; fix: run `snapback alerts set %s` and paste the URL", v, name)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", v, err)
		}
		return strings.TrimSpace(s), nil
	case strings.HasPrefix(v, fileRefPrefix):
		return readSecretFile(strings.TrimPrefix(v, fileRefPrefix))
	}
	return v, nil
}

// AlertSecretKey is the keychain account under which the URL of keyring:NAME is stored; the
// prefix keeps alert URLs apart from backup passwords (whose account is a UDID).
func AlertSecretKey(name string) string { return alertSecretPrefix + name }

// readSecretFile reads a URL from a file that must be a regular file not readable or writable
// by group or others (like ssh refuses a private key with loose permissions).
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("file:%s: %w; fix: create it with the URL on one line and chmod 600 it", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("file:%s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("file:%s is not a regular file; fix: point file: at a plain file holding the URL", path)
	}
	// Windows reports no POSIX bits (every file reads as 0666); its ACLs guard the file.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return "", fmt.Errorf("file:%s can be read or changed by other users (mode %04o); fix: chmod 600 %s", path, perm, path)
	}
	buf := make([]byte, maxSecretURLFileSize+1)
	n, _ := f.Read(buf)
	if n > maxSecretURLFileSize {
		return "", fmt.Errorf("file:%s is larger than %d bytes; fix: keep only the URL in it", path, maxSecretURLFileSize)
	}
	s := strings.TrimSpace(string(buf[:n]))
	if s == "" {
		return "", fmt.Errorf("file:%s is empty; fix: write the service URL into it", path)
	}
	return s, nil
}

// IsLoopback reports whether listen (host:port) binds to the loopback interface only.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateHTTP(h HTTP) []error {
	if h.Listen == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(h.Listen)
	bad := err != nil || port == ""
	if !bad && host != "" && host != "localhost" && net.ParseIP(host) == nil {
		bad = true
	}
	if bad {
		return []error{&Problem{Key: "http.listen", Problem: fmt.Sprintf("%q is not host:port", h.Listen),
			Fix: "write an address and port such as 127.0.0.1:8427 (loopback), or 0.0.0.0:8427 to serve the network (needs the token from `snapback http token`)"}}
	}
	return nil
}

func validateAlerts(d DeviceSettings, prefix string, only map[string]bool) []error {
	var probs []error
	if only == nil || only["alerts"] {
		for i, a := range d.Alerts {
			key := fmt.Sprintf("%salerts[%d]", prefix, i)
			if a.URL == "" {
				probs = append(probs, &Problem{Key: key + ".url", Problem: "missing",
					Fix: "give every alert a url (e.g. ntfy://ntfy.sh/my-topic or keyring:NAME)"})
			} else if p, fix := validateURLRef(a.URL); p != "" {
				probs = append(probs, &Problem{Key: key + ".url", Problem: p, Fix: fix})
			}
			for _, e := range a.Events {
				if !slices.Contains(AlertEvents(), e) {
					probs = append(probs, &Problem{Key: key + ".events", Problem: fmt.Sprintf("%q is not an event", e),
						Fix: "use any of " + strings.Join(AlertEvents(), ", ") + " (or leave events out for all)"})
				}
			}
		}
	}
	for _, p := range []struct{ key, v string }{{"pings.start", d.Pings.Start}, {"pings.success", d.Pings.Success}, {"pings.failure", d.Pings.Failure}} {
		if p.v == "" || (only != nil && !only[p.key]) {
			continue
		}
		if prob, fix := validateURLRef(p.v); prob != "" {
			probs = append(probs, &Problem{Key: prefix + p.key, Problem: prob, Fix: fix})
		}
	}
	return probs
}
