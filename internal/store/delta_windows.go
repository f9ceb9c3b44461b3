//go:build windows

package store

import "context"

// diffTree: a directory listing carries no file index on Windows, so commits measure the
// whole folder (errNoDelta).
func (s *Store) diffTree(context.Context, string, string, int) (*delta, error) {
	return nil, errNoDelta
}
