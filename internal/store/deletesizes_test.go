//go:build linux

package store

import (
	"context"
	"testing"
	"time"
)

// A deletion adds to its neighbours' UniqueSize what they inherit from the deleted snapshot
// instead of re-measuring them; every record must still say what measure() says, after
// deleting the oldest snapshot, one in the middle, a pinned (then unpinned) archive, and
// several at once by retention, and the shortcut must have been taken (no full measure).
func TestDeletionSizesMatchMeasure(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: epoch, step: time.Hour}
	opts := testOptions(clock)
	measured := 0
	opts.hook = func(p string) {
		if p == "delete:measure" {
			measured++
		}
	}
	s := openStore(t, t.TempDir(), opts)
	dev := newFakeDevice(testUDID, 80, 700, 5)
	runBackup(t, s, dev)
	for run := 1; run <= 8; run++ {
		dev.change(10)
		runBackup(t, s, dev)
	}
	checkSizes(t, s, 0)
	list := mustList(t, s)
	a, err := s.Archive(ctx, testUDID, list[4].ID)
	if err != nil {
		t.Fatal(err)
	}
	checkSizes(t, s, 1)

	// The oldest: only the next one inherits.
	before := mustList(t, s)
	if err := s.Delete(ctx, testUDID, list[0].ID); err != nil {
		t.Fatal(err)
	}
	checkSizes(t, s, 2)
	if after := mustList(t, s); after[0].UniqueSize <= before[1].UniqueSize {
		t.Errorf("the oldest's neighbour inherited nothing: unique %d, was %d", after[0].UniqueSize, before[1].UniqueSize)
	}
	// One in the middle (next to the archived one): both neighbours inherit.
	if err := s.Delete(ctx, testUDID, list[3].ID); err != nil {
		t.Fatal(err)
	}
	checkSizes(t, s, 3)
	// The archived snapshot itself, then the archive (pinned: unpin first).
	if err := s.Delete(ctx, testUDID, list[4].ID); err != nil {
		t.Fatal(err)
	}
	checkSizes(t, s, 4)
	if err := s.Unpin(testUDID, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, testUDID, a.ID); err != nil {
		t.Fatal(err)
	}
	checkSizes(t, s, 5)
	// Retention deleting several neighbours in one go.
	if _, deleted, err := s.Prune(ctx, testUDID, Policy{KeepDaily: 1}, PruneOptions{Approve: true}); err != nil || len(deleted) < 2 {
		t.Fatalf("prune deleted %v: %v", deleted, err)
	}
	checkSizes(t, s, 6)
	if measured != 0 {
		t.Errorf("%d neighbours re-measured in full; want none (listing available here)", measured)
	}
}
