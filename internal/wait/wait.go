// Package wait pauses the way every retry loop of Snapback must: for a duration, or until
// the context ends, whichever comes first (time.Sleep would keep a cancelled backup waiting).
package wait

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends; then it returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
