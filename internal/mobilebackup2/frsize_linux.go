package mobilebackup2

import "golang.org/x/sys/unix"

func frsize(st *unix.Statfs_t) int64 { return int64(st.Frsize) }
