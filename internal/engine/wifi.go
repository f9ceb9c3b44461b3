package engine

import (
	"context"
	"errors"
	"time"

	"snapback/internal/device"
	"snapback/internal/failure"
)

// Over Wi-Fi a link can die without a word (the phone sleeps or leaves the network) while a
// healthy device can also be silent for a long time (scanning before the first message).
// Neither a read deadline nor waiting forever works, so while a Wi-Fi backup runs the engine
// probes the device's lockdownd on a separate connection; after probeFailures failed probes
// in a row the run is cancelled as LinkLost. Over USB nothing is probed: a pulled cable
// closes the socket at once.
const (
	defaultProbeEvery = 20 * time.Second
	probeFailures     = 2
)

// watchWiFi probes e every `every` until ctx ends, and calls lost once the device has
// failed probeFailures probes in a row. The goroutine is owned by the caller through stop.
func watchWiFi(ctx context.Context, e device.Entry, every time.Duration, lost func(error)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		failed := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := device.Probe(ctx, e, every); err != nil {
				if ctx.Err() != nil {
					return
				}
				failed++
				if failed >= probeFailures {
					lost(err)
					return
				}
				continue
			}
			failed = 0
		}
	}()
	return func() { cancel(); <-done }
}

func linkLostOverWiFi(cause error) *failure.Error {
	e := failure.New(failure.LinkLost, cause)
	e.Detail = "the device stopped answering over Wi-Fi"
	return e
}

// cleanupTimeout bounds the polite goodbyes (sync unlock, notification_proxy shutdown).
// When the run ended because the link is known dead there is nobody to say goodbye to.
func cleanupTimeout(ctx context.Context) time.Duration {
	if errors.Is(context.Cause(ctx), failure.LinkLost) {
		return 100 * time.Millisecond
	}
	return 5 * time.Second
}

// ensurePaired pairs udid with this computer if it does not trust it yet: a device Finder or
// iTunes never saw (macOS, Windows), any device over Wi-Fi, or one whose user un-trusted
// this computer. The user is told through prompt.
func ensurePaired(ctx context.Context, devs *device.Host, udid string, prompt func(device.PairPrompt, string), timeout time.Duration) error {
	e, err := devs.Find(ctx, udid)
	if err != nil {
		return err
	}
	if e.Via == device.FoundWiFiDirect {
		return nil // found by proving its pairing; and pairing over Wi-Fi is impossible anyway
	}
	err = device.Validate(ctx, e)
	if err == nil || !errors.Is(err, failure.NotPaired) {
		return err
	}
	return device.Pair(ctx, e, device.PairOptions{Prompt: prompt, Timeout: timeout})
}
