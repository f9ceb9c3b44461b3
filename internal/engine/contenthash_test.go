package engine

import (
	"context"
	"hash"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/mobilebackup2"
	"snapback/internal/store"
)

// TestContentHashedWhileStreaming: with the store's hash passed down, every uploaded file is
// hashed as its bytes stream in, and the sums the commit indexes from that stream are the
// files' real content (verify --data re-reads and agrees, with nothing unindexed).
func TestContentHashedWhileStreaming(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 17, Files: 80}, devicesim.DeviceConfig{})
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{Known: "-"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := 0; round < 2; round++ {
		run, err := st.Begin(ctx, r.udid, store.BeginOptions{})
		if err != nil {
			t.Fatal(err)
		}
		newHash, hashed := run.ContentHash()
		streamed := 0
		res, err := Backup(ctx, Request{UDID: r.udid, Root: run.Root(), LockRetry: 10 * time.Millisecond,
			ContentHash: func() hash.Hash { return newHash() },
			ContentHashed: func(l mobilebackup2.Landed) {
				streamed++
				hashed(l.Name, l.Info, l.Sum)
			}})
		if err != nil {
			run.Abort()
			t.Fatal(err)
		}
		if streamed == 0 || int64(streamed) != res.Backup.FilesReceived {
			t.Errorf("round %d: %d files hashed while streaming, %d received", round, streamed, res.Backup.FilesReceived)
		}
		if _, err := run.Commit(ctx, store.CommitMeta{}); err != nil {
			t.Fatal(err)
		}
		r.agent.Mutate(10)
	}
	rep, err := st.VerifyData(ctx, r.udid)
	if err != nil || rep.Unindexed != 0 || rep.Files == 0 {
		t.Fatalf("verify --data after streamed hashing: %+v, %v", rep, err)
	}
}
