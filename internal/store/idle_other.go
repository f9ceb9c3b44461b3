//go:build !linux

package store

// RunIdle runs fn. Only Linux gets idle I/O priority here; elsewhere the scrub's daily budget
// alone keeps it small.
func RunIdle(fn func()) { fn() }
