package store

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// render prints a Decision as a table, chronologically, for golden files.
func render(snaps []SnapshotInfo, latestSize int64, p Policy, now time.Time, d Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy: max extra %d%%, min age %s, ask %v, daily %d, weekly %d, monthly %d\n",
		p.MaxExtraPercent, days(p.MinAge), p.AskBeforeDelete, p.KeepDaily, p.KeepWeekly, p.KeepMonthly)
	fmt.Fprintf(&b, "now: %s  latest size: %s  snapshots: %d\n", now.Format(time.RFC3339), mb(latestSize), len(snaps))
	fmt.Fprintf(&b, "limit: %s  extra before: %s  after: %s  needs approval: %v\n\n",
		mb(d.LimitBytes), mb(d.ExtraBytes), mb(d.ExtraAfterBytes), d.NeedsApproval())
	type row struct {
		v      Verdict
		action string
	}
	var rows []row
	for _, v := range d.Keep {
		rows = append(rows, row{v, "keep"})
	}
	for _, v := range d.Delete {
		rows = append(rows, row{v, "DELETE"})
	}
	for _, v := range d.Pending {
		rows = append(rows, row{v, "pending"})
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].v.Time.Equal(rows[j].v.Time) {
			return rows[i].v.Time.Before(rows[j].v.Time)
		}
		return rows[i].v.ID < rows[j].v.ID
	})
	for _, r := range rows {
		fmt.Fprintf(&b, "%-7s %-34s %s\n", r.action, r.v.ID, r.v.Reason)
	}
	return b.String()
}

// daily returns n snapshots, one a day at 03:00 ending at now's day, each holding unique
// bytes; the newest is the latest backup.
func daily(now time.Time, n int, unique int64) []SnapshotInfo {
	var out []SnapshotInfo
	for i := n - 1; i >= 0; i-- {
		t := time.Date(now.Year(), now.Month(), now.Day(), 3, 0, 0, 0, time.UTC).AddDate(0, 0, -i)
		out = append(out, SnapshotInfo{ID: t.Format(IDLayout), Time: t, UniqueSize: unique, Latest: i == 0})
	}
	return out
}

func TestPlanGolden(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	const gb = int64(1e9)
	noAsk := DefaultPolicy()
	noAsk.AskBeforeDelete = false
	withExtras := func(s []SnapshotInfo) []SnapshotInfo {
		s[2].Pinned = true
		s[5].Pinned = true
		arch := SnapshotInfo{ID: testUDID + "-20260920-030000", Time: time.Date(2026, 9, 20, 3, 0, 0, 0, time.UTC), UniqueSize: 0, Archive: true}
		return append(s, arch)
	}
	cases := []struct {
		name   string
		snaps  []SnapshotInfo
		latest int64
		policy Policy
	}{
		// 60 daily snapshots of 30 MB each against a 1 GB latest: 1.77 GB held, 500 MB allowed.
		// The oldest go until under the limit, but only those older than 30 days.
		{"imazing-rule", daily(now, 60, 30e6), gb, noAsk},
		// Under the limit: nothing is deleted, each snapshot says why it stays.
		{"under-limit", daily(now, 40, 10e6), gb, noAsk},
		// Over the limit, but every snapshot is younger than 30 days: the age limit wins.
		{"age-limit", daily(now, 25, 100e6), gb, noAsk},
		// The default asks: deletions become a pending approval and nothing is deleted.
		{"approval-pending", daily(now, 60, 30e6), gb, DefaultPolicy()},
		// Pinned snapshots and archives are kept whatever their age and size.
		{"archives-and-pins", withExtras(daily(now, 45, 40e6)), gb, noAsk},
		// Tiers alone: keep 7 daily, 4 weekly and 6 monthly; everything else older than a day goes.
		{"tiers", daily(now, 120, 10e6), gb, Policy{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6, MinAge: 24 * time.Hour}},
		// Tiers with the size rule: tiers only protect; the size rule decides.
		{"tiers-with-size-rule", daily(now, 90, 20e6), gb, Policy{MaxExtraPercent: 50, MinAge: 30 * 24 * time.Hour, KeepWeekly: 8}},
		// An empty policy deletes nothing, however much the snapshots hold.
		{"disabled", daily(now, 40, 500e6), gb, Policy{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := append([]SnapshotInfo(nil), c.snaps...)
			d := Plan(c.snaps, c.latest, c.policy, now)
			if fmt.Sprint(in) != fmt.Sprint(c.snaps) {
				t.Fatal("Plan modified its input")
			}
			checkInvariants(t, c.snaps, c.policy, d)
			got := render(c.snaps, c.latest, c.policy, now, d)
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestPlanGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("decision differs from %s (go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// checkInvariants: every snapshot decided once; protected ones never deleted; an empty policy
// deletes nothing; asking means nothing to delete now; the size rule stops at the limit.
func checkInvariants(t *testing.T, snaps []SnapshotInfo, p Policy, d Decision) {
	t.Helper()
	seen := map[string]int{}
	for _, list := range [][]Verdict{d.Keep, d.Delete, d.Pending} {
		for _, v := range list {
			seen[v.ID]++
			if v.Reason == "" {
				t.Errorf("%s has no reason", v.ID)
			}
		}
	}
	for _, s := range snaps {
		if seen[s.ID] != 1 {
			t.Errorf("%s decided %d times", s.ID, seen[s.ID])
		}
	}
	gone := map[string]bool{}
	for _, v := range append(append([]Verdict(nil), d.Delete...), d.Pending...) {
		gone[v.ID] = true
	}
	for _, s := range snaps {
		if gone[s.ID] && (s.Latest || s.Archive || s.Pinned) {
			t.Errorf("protected snapshot %s would be deleted", s.ID)
		}
	}
	if p == (Policy{}) && len(gone) > 0 {
		t.Errorf("empty policy deletes %d snapshots", len(gone))
	}
	if p.AskBeforeDelete && len(d.Delete) > 0 {
		t.Errorf("policy asks, but %d deletions are not pending", len(d.Delete))
	}
	if p.MaxExtraPercent > 0 && len(gone) > 0 && d.ExtraAfterBytes > d.LimitBytes {
		// Allowed only when the age limit or protection stopped it; then no candidate is left.
		for _, v := range d.Keep {
			if strings.HasPrefix(v.Reason, "within the size limit") {
				t.Errorf("%s kept as within the limit while over it", v.ID)
			}
		}
	}
}

func TestPlanKeepsNewestWithoutLatestFlag(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	snaps := daily(now.AddDate(0, -3, 0), 10, 1e9)
	snaps[len(snaps)-1].Latest = false
	d := Plan(snaps, 1e6, Policy{KeepDaily: 1, MinAge: time.Hour}, now)
	newest := snaps[len(snaps)-1].ID
	for _, v := range d.Delete {
		if v.ID == newest {
			t.Fatalf("newest snapshot %s deleted when no snapshot was flagged latest", newest)
		}
	}
	if len(d.Delete) != 9 {
		t.Fatalf("deleted %d, want the 9 older ones", len(d.Delete))
	}
}

func TestPlanDeterministic(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	snaps := daily(now, 50, 25e6)
	a := Plan(snaps, 1e9, DefaultPolicy(), now)
	// Same snapshots in another order: same decision.
	rev := append([]SnapshotInfo(nil), snaps...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	b := Plan(rev, 1e9, DefaultPolicy(), now)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("Plan depends on input order")
	}
}
