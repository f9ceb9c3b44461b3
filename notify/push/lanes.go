package push

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// job is one delivery: attempt is called until it succeeds or the retries run out.
type job struct {
	label   string // what is delivered where, safe to log (no secret)
	attempt func(ctx context.Context) error
	scrub   func(string) string // removes secrets from an error message
}

// lanes runs ordered delivery queues, one goroutine per key (a channel or a device), so one
// service that is down or slow delays only its own messages. Submitting never blocks: a full
// lane drops the new message and logs it. The lanes and their goroutines belong to run's ctx;
// run waits for all of them before it returns.
type lanes struct {
	backoff []time.Duration // waits between attempts; len(backoff)+1 attempts in all
	timeout time.Duration   // bound of one attempt
	size    int             // queue length per lane
	log     *slog.Logger

	mu     sync.Mutex
	ctx    context.Context // nil until run starts and again after it ends
	wg     sync.WaitGroup
	queues map[string]chan job
}

// init sets the lanes up, with the defaults of Options for zero values: no logging, the
// DefaultBackoff schedule, 30 s per attempt, 32 queued jobs per lane.
func (l *lanes) init(log *slog.Logger, backoff []time.Duration, timeout time.Duration, size int) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if backoff == nil {
		backoff = DefaultBackoff
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if size <= 0 {
		size = 32
	}
	l.log, l.backoff, l.timeout, l.size = log, backoff, timeout, size
}

// open starts accepting submissions; lanes run until ctx ends.
func (l *lanes) open(ctx context.Context) {
	l.mu.Lock()
	l.ctx = ctx
	l.queues = map[string]chan job{}
	l.mu.Unlock()
}

// close stops accepting submissions and waits for every lane to stop; cancel the ctx given to
// open first.
func (l *lanes) close() {
	l.mu.Lock()
	l.ctx = nil
	l.mu.Unlock()
	l.wg.Wait()
}

// submit queues j on lane key. It reports false when the lanes are not running or the lane is
// full.
func (l *lanes) submit(key string, j job) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil {
		l.log.Warn("alert not sent: the sender is not running", "what", j.label)
		return false
	}
	q, ok := l.queues[key]
	if !ok {
		q = make(chan job, l.size)
		l.queues[key] = q
		ctx := l.ctx
		l.wg.Go(func() { l.serve(ctx, q) })
	}
	select {
	case q <- j:
		return true
	default:
		l.log.Warn("alert dropped: its channel is too far behind (is the service down?)", "what", j.label)
		return false
	}
}

// serve delivers one lane's jobs in order, retrying each with backoff.
func (l *lanes) serve(ctx context.Context, q chan job) {
	var stuck <-chan error // an attempt that outlived its timeout and still runs
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			for try := 0; ; try++ {
				var err error
				stuck, err = l.attempt(ctx, j, stuck)
				if err == nil {
					if try > 0 {
						l.log.Info("alert delivered after retrying", "what", j.label, "attempts", try+1)
					}
					break
				}
				msg := j.scrub(err.Error())
				if try >= len(l.backoff) || ctx.Err() != nil {
					l.log.Error("alert not delivered; giving up", "what", j.label, "attempts", try+1, "err", msg)
					break
				}
				l.log.Warn("alert not delivered; will retry", "what", j.label, "attempt", try+1, "retry_in", l.backoff[try], "err", msg)
				t := time.NewTimer(l.backoff[try])
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
	}
}

// attempt runs one try bounded by the timeout. Some services of the notification library take
// no context (the generic webhook uses http.DefaultClient without a timeout), so a try that
// overruns is left running and reported as stuck; the next try first waits for it, which keeps
// at most one hung call per lane.
func (l *lanes) attempt(ctx context.Context, j job, stuck <-chan error) (<-chan error, error) {
	if stuck != nil {
		select {
		case <-stuck:
		case <-ctx.Done():
			return stuck, ctx.Err()
		}
	}
	actx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- j.attempt(actx) }()
	select {
	case err := <-done:
		return nil, err
	case <-actx.Done():
		return done, errTimeout{l.timeout}
	}
}

type errTimeout struct{ d time.Duration }

func (e errTimeout) Error() string { return "no answer within " + e.d.String() }
