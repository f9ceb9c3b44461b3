//go:build !linux

package offheap

func mapAnon(int) ([]byte, bool) { return nil, false }

func unmap([]byte) {}
