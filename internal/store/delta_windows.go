//go:build windows

package store

import "context"

// diffTree: a directory listing carries no file index on Windows, so commits measure the
// whole folder (errNoDelta).
func (s *Store) diffTree(context.Context, string, string, int) (*delta, error) {
	return nil, errNoDelta
}

// canListInodes: full backups' commits verify and measure the whole folder.
const canListInodes = false

func (s *Store) walkWritten(context.Context, string, sumTable, func(writtenFile) error) error {
	return errNoDelta
}
