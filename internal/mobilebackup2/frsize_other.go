//go:build unix && !linux

package mobilebackup2

import "golang.org/x/sys/unix"

// BSD and macOS statfs report counts in units of f_bsize (the fundamental block size there).
func frsize(st *unix.Statfs_t) int64 { return int64(st.Bsize) }
