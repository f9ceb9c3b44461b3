//go:build !linux

package store

// openNoATime is Linux's O_NOATIME; other systems have no such flag (macOS updates access
// times lazily by default).
const openNoATime = 0
