package store

import (
	"fmt"
	"sort"
	"time"
)

// SnapshotInfo is what retention needs to know about one snapshot or archive.
type SnapshotInfo struct {
	ID         string
	Time       time.Time
	UniqueSize int64 // bytes only this snapshot holds
	Latest     bool  // the latest complete backup: never deleted
	Archive    bool  // an archived backup: never deleted automatically
	Pinned     bool  // pinned by the user: never deleted automatically
}

// Policy is a retention policy. The zero Policy deletes nothing.
type Policy struct {
	// MaxExtraPercent enables iMazing's rule: when all snapshots together hold more than this
	// percentage of the latest backup's size, the oldest snapshots older than MinAge are
	// deleted until they hold less. 0 disables the rule.
	MaxExtraPercent int
	// MinAge protects snapshots younger than this from every rule.
	MinAge time.Duration
	// AskBeforeDelete turns deletions into a pending approval.
	AskBeforeDelete bool
	// KeepDaily, KeepWeekly and KeepMonthly keep the newest snapshot of that many recent
	// days, ISO weeks and months. With the size rule they only protect; without it, every
	// snapshot older than MinAge that no tier keeps is deleted.
	KeepDaily, KeepWeekly, KeepMonthly int
}

// DefaultPolicy is iMazing's default: snapshots may hold up to half the latest backup's size;
// beyond that the oldest ones older than 30 days go, after asking.
func DefaultPolicy() Policy {
	return Policy{MaxExtraPercent: 50, MinAge: 30 * 24 * time.Hour, AskBeforeDelete: true}
}

// Verdict is one snapshot's fate and why.
type Verdict struct {
	ID     string
	Time   time.Time
	Reason string
}

// Decision is the outcome of Plan. Keep, Delete and Pending are in chronological order and
// together name every snapshot given to Plan exactly once.
type Decision struct {
	Keep    []Verdict
	Delete  []Verdict // delete now
	Pending []Verdict // would be deleted; waiting for the user's approval (AskBeforeDelete)

	LimitBytes      int64 // the size rule's limit; 0 when the rule is off
	ExtraBytes      int64 // bytes all snapshots (not the latest, not archives) hold
	ExtraAfterBytes int64 // the same after Delete and Pending are gone
}

// NeedsApproval reports whether deletions wait for the user.
func (d Decision) NeedsApproval() bool { return len(d.Pending) > 0 }

// Plan decides which snapshots retention deletes. It is a pure function: the same inputs
// always give the same Decision. It never deletes the latest backup, an archive or a pinned
// snapshot, and a policy with no rule deletes nothing. latestSize is the latest backup's
// total size.
//
// Sizes are the recorded unique sizes; deleting a snapshot hands the bytes it shared with a
// neighbour to that neighbour, so the real saving can be smaller than ExtraBytes −
// ExtraAfterBytes. Retention runs again after every commit, which corrects this over time.
func Plan(snapshots []SnapshotInfo, latestSize int64, policy Policy, now time.Time) Decision {
	snaps := append([]SnapshotInfo(nil), snapshots...)
	sort.SliceStable(snaps, func(i, j int) bool {
		if !snaps[i].Time.Equal(snaps[j].Time) {
			return snaps[i].Time.Before(snaps[j].Time)
		}
		return snaps[i].ID < snaps[j].ID
	})
	var d Decision
	keep := map[string]string{}
	// The last complete backup is kept even when the caller did not flag it as the latest
	// (a listing taken while the latest folder was missing or being replaced).
	hasLatest := false
	for _, s := range snaps {
		hasLatest = hasLatest || s.Latest
	}
	for i := len(snaps) - 1; i >= 0 && !hasLatest; i-- {
		if !snaps[i].Archive {
			keep[snaps[i].ID] = "newest snapshot: never deleted"
			break
		}
	}
	for _, s := range snaps {
		if _, ok := keep[s.ID]; ok {
			continue
		}
		switch {
		case s.Latest:
			keep[s.ID] = "latest backup: never deleted"
		case s.Archive:
			keep[s.ID] = "archive: never deleted automatically"
		case s.Pinned:
			keep[s.ID] = "pinned"
		default:
			d.ExtraBytes += s.UniqueSize
		}
	}
	d.ExtraAfterBytes = d.ExtraBytes
	sizeRule := policy.MaxExtraPercent > 0
	tiers := policy.KeepDaily > 0 || policy.KeepWeekly > 0 || policy.KeepMonthly > 0
	if sizeRule {
		d.LimitBytes = latestSize * int64(policy.MaxExtraPercent) / 100
	}
	loc := now.Location()
	tier := func(n int, name string, key func(time.Time) string) {
		if n <= 0 {
			return
		}
		seen := map[string]bool{}
		for i := len(snaps) - 1; i >= 0 && len(seen) < n; i-- {
			s := snaps[i]
			if s.Archive {
				continue
			}
			k := key(s.Time.In(loc))
			if seen[k] {
				continue
			}
			seen[k] = true
			if _, ok := keep[s.ID]; !ok {
				keep[s.ID] = fmt.Sprintf("%s tier: newest of %s (%d of %d)", name, k, len(seen), n)
			}
		}
	}
	tier(policy.KeepDaily, "daily", func(t time.Time) string { return t.Format("2006-01-02") })
	tier(policy.KeepWeekly, "weekly", func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	})
	tier(policy.KeepMonthly, "monthly", func(t time.Time) string { return t.Format("2006-01") })

	del := map[string]string{}
	for _, s := range snaps {
		if _, ok := keep[s.ID]; ok {
			continue
		}
		age := now.Sub(s.Time)
		switch {
		case !sizeRule && !tiers:
			keep[s.ID] = "retention is off: nothing is deleted"
		case age < policy.MinAge:
			keep[s.ID] = fmt.Sprintf("younger than %s (age %s)", days(policy.MinAge), days(age))
		case sizeRule && d.ExtraAfterBytes > d.LimitBytes:
			del[s.ID] = fmt.Sprintf("oldest snapshot older than %s while snapshots hold %s, over the %d%% limit of %s",
				days(policy.MinAge), mb(d.ExtraAfterBytes), policy.MaxExtraPercent, mb(d.LimitBytes))
			d.ExtraAfterBytes -= s.UniqueSize
		case sizeRule:
			keep[s.ID] = fmt.Sprintf("within the size limit: snapshots hold %s of %s allowed", mb(d.ExtraAfterBytes), mb(d.LimitBytes))
		default:
			del[s.ID] = fmt.Sprintf("older than %s and kept by no daily, weekly or monthly tier", days(policy.MinAge))
			d.ExtraAfterBytes -= s.UniqueSize
		}
	}
	for _, s := range snaps {
		v := Verdict{ID: s.ID, Time: s.Time}
		if r, ok := del[s.ID]; ok {
			v.Reason = r
			if policy.AskBeforeDelete {
				v.Reason += "; waiting for approval"
				d.Pending = append(d.Pending, v)
			} else {
				d.Delete = append(d.Delete, v)
			}
			continue
		}
		v.Reason = keep[s.ID]
		d.Keep = append(d.Keep, v)
	}
	return d
}

// days formats a duration in whole days (retention thinks in days; hours only below one).
func days(d time.Duration) string {
	if d < 24*time.Hour {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
