package store

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// lockInfo is the content of a device lock file: who holds it and since when. The token
// lets the holder release only its own lock, never one a later run took over.
type lockInfo struct {
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Time  time.Time `json:"time"`
	Token string    `json:"token"`
}

func readLock(path string) (lockInfo, error) {
	return readJSON[lockInfo](path, "lock")
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}
