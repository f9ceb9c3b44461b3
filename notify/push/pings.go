package push

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Stage is the point of a backup run a ping reports.
type Stage int

// The stages, in the order a run passes them.
const (
	Start Stage = iota
	Success
	Failure
)

func (s Stage) String() string {
	switch s {
	case Start:
		return "start"
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// PingResolver returns the URL to fetch for a device's stage ("" when none is configured) and
// a label for it without secrets. It may read the keychain.
type PingResolver func(ctx context.Context, udid string, s Stage) (url, label string, err error)

// Pinger fetches dead-man's-switch URLs (healthchecks.io, Uptime Kuma push monitors, Cronitor):
// one ordered queue per device, so start, success and failure arrive in the order they
// happened even when one of them needs retries.
type Pinger struct {
	resolve PingResolver
	client  *http.Client
	log     *slog.Logger
	lanes   lanes
}

// PingOptions configure a Pinger; zero values take the defaults of Options.
type PingOptions struct {
	Resolve PingResolver
	Logger  *slog.Logger
	Backoff []time.Duration
	Timeout time.Duration
}

// NewPinger returns a Pinger; nothing is fetched until Run runs.
func NewPinger(o PingOptions) *Pinger {
	p := &Pinger{resolve: o.Resolve}
	p.lanes.init(o.Logger, o.Backoff, o.Timeout, 0)
	p.log, p.client = p.lanes.log, &http.Client{Timeout: p.lanes.timeout}
	return p
}

// Run fetches until ctx ends, then waits for its goroutines.
func (p *Pinger) Run(ctx context.Context) {
	p.lanes.open(ctx)
	defer p.lanes.close()
	<-ctx.Done()
}

// Ping queues the device's ping for stage s. It never blocks.
func (p *Pinger) Ping(udid string, s Stage) {
	if p.resolve == nil {
		return
	}
	p.lanes.submit("ping "+udid, job{
		label: fmt.Sprintf("%s ping of %s", s, udid),
		attempt: func(ctx context.Context) error {
			u, label, err := p.resolve(ctx, udid, s)
			if err != nil || u == "" {
				return err // nothing configured is not a failure
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			req.Header.Set("User-Agent", "Snapback")
			res, err := p.client.Do(req)
			if err != nil {
				// net/http quotes the URL in its errors; the URL is the secret.
				return fmt.Errorf("%s: %s", label, Scrubber(u)(err.Error()))
			}
			io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
			if res.StatusCode >= 300 {
				return fmt.Errorf("%s: %s", label, res.Status)
			}
			return nil
		},
		// The URL is resolved inside the attempt, which scrubs its own errors.
		scrub: func(s string) string { return s },
	})
}
