package diskspace

import "golang.org/x/sys/unix"

// blockSize is f_frsize, the fundamental block size Linux counts blocks in.
func blockSize(st *unix.Statfs_t) uint64 { return uint64(st.Frsize) }
