//go:build windows

package store

import "context"

// inheritedBytes: a directory listing carries no file index on Windows, so a deletion
// re-measures the neighbours in full (errNoDelta).
func inheritedBytes(context.Context, string, string) (int64, error) { return 0, errNoDelta }
