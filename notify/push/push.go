// Package push delivers Snapback's notifications beyond the desktop: to the services a user
// configures as URLs (ntfy, Telegram, Pushover, Gotify, SMTP e-mail, Discord, Slack, generic
// webhooks, through github.com/nicholas-fedor/shoutrrr), and to dead-man's-switch ping URLs.
//
// Delivery never blocks the caller: messages go onto one ordered queue per channel (per device
// for pings), served by goroutines that belong to Run, retried with backoff, and logged without
// the URL's secrets when they fail. Rate limiting is notify.Gate's job: put one in front of the
// Dispatcher.
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"

	"snapback/notify"
)

// Channel is one configured alert destination, resolved for sending.
type Channel struct {
	// Label names the channel in logs and on the status page; it holds no secret
	// (settings.Redact of the configured value).
	Label string
	// URL is the service URL with its secrets. It is used for sending and nothing else.
	URL string
	// Wants reports whether the channel receives events of a kind (settings event name);
	// nil means every kind.
	Wants func(event string) bool
}

// Resolver returns the channels that should receive a device's messages (udid "" for app-wide
// ones). It may be slow (it reads the keychain) and is called from the Dispatcher's goroutine.
// A channel that cannot be resolved is reported with an error that names it without secrets.
type Resolver func(ctx context.Context, udid string) ([]Channel, []error)

// Sender delivers one message to one service URL. The default uses shoutrrr.
type Sender func(ctx context.Context, serviceURL, title, body string) error

// Options configure a Dispatcher. Zero values take the defaults.
type Options struct {
	Resolve Resolver
	Send    Sender
	Logger  *slog.Logger
	// Backoff are the waits between attempts (default 30s, 2m, 10m, 30m: a service that is
	// down for a while still gets the message when it comes back).
	Backoff []time.Duration
	// Timeout bounds one attempt (default 30s).
	Timeout time.Duration
	// QueueSize is how many messages one channel may fall behind (default 32).
	QueueSize int
}

// DefaultBackoff is the retry schedule of a failed delivery.
var DefaultBackoff = []time.Duration{30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute}

// Dispatcher is a notify.Notifier that sends every message to the channels that want it.
type Dispatcher struct {
	resolve Resolver
	send    Sender
	log     *slog.Logger
	inbox   chan notify.Message
	lanes   lanes
}

// New returns a Dispatcher; nothing is sent until Run runs.
func New(o Options) *Dispatcher {
	if o.Send == nil {
		o.Send = Shoutrrr
	}
	d := &Dispatcher{resolve: o.Resolve, send: o.Send, inbox: make(chan notify.Message, 64)}
	d.lanes.init(o.Logger, o.Backoff, o.Timeout, o.QueueSize)
	d.log = d.lanes.log
	return d
}

// Run delivers until ctx ends, then waits for its goroutines.
func (d *Dispatcher) Run(ctx context.Context) {
	d.lanes.open(ctx)
	defer d.lanes.close()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-d.inbox:
			d.route(ctx, m)
		}
	}
}

// Notify queues m for every channel that wants its kind. It never blocks and never fails
// for a delivery problem (those are logged); it fails only when the inbox is full.
func (d *Dispatcher) Notify(m notify.Message) error {
	select {
	case d.inbox <- m:
		return nil
	default:
		return errors.New("alert inbox full; message dropped")
	}
}

func (d *Dispatcher) route(ctx context.Context, m notify.Message) {
	if d.resolve == nil {
		return
	}
	event := EventName(m.Kind)
	chans, errs := d.resolve(ctx, m.UDID)
	for _, err := range errs {
		d.log.Error("alert channel unusable", "err", err)
	}
	for _, c := range chans {
		if c.Wants != nil && !c.Wants(event) {
			continue
		}
		// A URL the library cannot use will not start working by retrying.
		if err := Check(c.URL); err != nil {
			d.log.Error("alert not sent: the channel's URL cannot work", "what", fmt.Sprintf("%s alert to %s", event, c.Label), "err", err)
			continue
		}
		c, m := c, m
		d.lanes.submit("alert "+c.URL, job{
			label:   fmt.Sprintf("%s alert to %s", event, c.Label),
			attempt: func(ctx context.Context) error { return d.send(ctx, c.URL, m.Title, m.Body) },
			scrub:   Scrubber(c.URL),
		})
	}
}

const testTimeout = 30 * time.Second

// Test sends a test message through every channel now and returns one result per channel,
// with errors free of secrets. For `snapback alerts test`.
func Test(ctx context.Context, send Sender, chans []Channel, title, body string) []error {
	if send == nil {
		send = Shoutrrr
	}
	out := make([]error, len(chans))
	for i, c := range chans {
		// Bounded: a service that accepts and never answers must not hang the command. The
		// abandoned call ends with the process.
		done := make(chan error, 1)
		go func() { done <- send(ctx, c.URL, title, body) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(testTimeout):
			err = errTimeout{testTimeout}
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			out[i] = errors.New(Scrubber(c.URL)(err.Error()))
		}
	}
	return out
}

// EventName is the settings name of a notification kind (alerts: events:).
func EventName(k notify.Kind) string {
	switch k {
	case notify.PasscodeRequested, notify.TrustRequested:
		// Both ask the user to act on the device now.
		return "passcode"
	case notify.Completed:
		return "completed"
	case notify.Failed, notify.SettingsBroken:
		// A broken settings file stops backups as surely as a failure does.
		return "failed"
	case notify.DiskMissing:
		return "disk_missing"
	case notify.Overdue:
		return "overdue"
	case notify.ApprovalNeeded:
		return "approval_needed"
	case notify.DamageFound:
		return "damage_found"
	}
	return k.String()
}

// Check reports whether the notification library understands serviceURL (known service,
// parsable configuration) without sending anything. The error is free of secrets.
func Check(serviceURL string) error {
	var r router.ServiceRouter
	if _, err := r.Locate(serviceURL); err != nil {
		return errors.New(Scrubber(serviceURL)(err.Error()))
	}
	return nil
}

// Shoutrrr sends through github.com/nicholas-fedor/shoutrrr. The library's errors may quote the
// URL; callers scrub them (Scrubber). Most of its services take no context: the ctx bounds only
// the wait (see lanes.attempt).
func Shoutrrr(_ context.Context, serviceURL, title, body string) error {
	var r router.ServiceRouter
	svc, err := r.Locate(serviceURL)
	if err != nil {
		return err
	}
	params := types.Params{}
	if title != "" {
		params.SetTitle(title)
	}
	return svc.Send(body, &params)
}

// Scrubber returns a function that removes every secret-looking part of serviceURL (the URL
// itself, user name and password, path segments, query values, fragment, and their escaped
// forms) from a text such as an error message.
func Scrubber(serviceURL string) func(string) string {
	parts := []string{serviceURL}
	if u, err := url.Parse(serviceURL); err == nil {
		parts = append(parts, u.String(), u.Fragment, u.Opaque, u.RawQuery)
		if u.User != nil {
			parts = append(parts, u.User.Username())
			if p, ok := u.User.Password(); ok {
				parts = append(parts, p)
			}
		}
		parts = append(parts, strings.Split(u.Path, "/")...)
		for _, vs := range u.Query() {
			parts = append(parts, vs...)
		}
	}
	// Longest first, so a whole URL goes before the segments inside it.
	slices.SortFunc(parts, func(a, b string) int { return len(b) - len(a) })
	var secrets []string
	for _, p := range parts {
		// Very short parts ("", "v1", "api") are not secrets and would mangle the message.
		if len(p) < 5 {
			continue
		}
		secrets = append(secrets, p, url.QueryEscape(p), url.PathEscape(p))
	}
	return func(s string) string {
		for _, p := range secrets {
			s = strings.ReplaceAll(s, p, "REDACTED")
		}
		return s
	}
}
