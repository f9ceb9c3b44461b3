//go:build linux

package store

import (
	"runtime"

	"golang.org/x/sys/unix"
)

const (
	ioprioWhoProcess = 1 // include/uapi/linux/ioprio.h: a process or, with a thread ID, one thread
	ioprioClassIdle  = 3
	ioprioClassShift = 13
)

// RunIdle runs fn on an OS thread of its own at idle I/O priority (served only when no other
// I/O waits) and the lowest CPU priority, and returns when fn does: the daily scrub re-reads
// the store without slowing the desktop or a running backup. fn must do its reading on the
// calling goroutine; goroutines it starts run at normal priority. The thread is never
// unlocked, so Go discards it (and its priority) when fn returns.
func RunIdle(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		tid := unix.Gettid()
		unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioClassIdle<<ioprioClassShift)
		unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
		fn()
	}()
	<-done
}

// ioPriorityClass is the I/O priority class of the calling thread (tests).
func ioPriorityClass() int {
	r, _, _ := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(unix.Gettid()), 0)
	return int(r) >> ioprioClassShift
}
