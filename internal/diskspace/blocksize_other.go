//go:build unix && !linux

package diskspace

import "golang.org/x/sys/unix"

// blockSize is f_bsize: BSD and macOS statfs count blocks in it (their fundamental size).
func blockSize(st *unix.Statfs_t) uint64 { return uint64(st.Bsize) }
