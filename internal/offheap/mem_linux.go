package offheap

import "golang.org/x/sys/unix"

func mapAnon(n int) ([]byte, bool) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	return b, err == nil
}

func unmap(b []byte) { _ = unix.Munmap(b) }
