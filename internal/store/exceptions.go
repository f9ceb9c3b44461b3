package store

// Exception is a file the device could not read during a backup: it sent part of the file
// and an error block, and went on (iOS 17's FileProvider backup_manifest.db, "Input/output
// error (5)"; pymobiledevice3 #755). The snapshot is committed without it and says so.
type Exception struct {
	FileID string `json:"fileID"`
	Domain string `json:"domain,omitempty"`
	Path   string `json:"path"` // relative path in Domain, or the device's own name for the file
	Reason string `json:"reason"`
}

// carriedExceptions is this run's exceptions plus those of the latest snapshot: a device
// that did not send a file again in an incremental backup leaves the host without it, and
// the new snapshot lacks it for the same reason. Only exceptions whose blob turns out to be
// missing or short are kept (keepExcepted).
func (s *Store) carriedExceptions(udid string, now []Exception) ([]Exception, error) {
	recs, err := readRecords(s.l.snapshots(udid))
	if err != nil {
		return nil, err
	}
	out := append([]Exception(nil), now...)
	seen := map[string]bool{}
	for _, e := range out {
		seen[e.FileID] = true
	}
	if n := len(recs); n > 0 && exists(s.l.latest(udid)) {
		for _, e := range recs[n-1].Exceptions {
			if !seen[e.FileID] {
				seen[e.FileID] = true
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func exceptionIDs(list []Exception) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	m := make(map[string]bool, len(list))
	for _, e := range list {
		m[e.FileID] = true
	}
	return m
}

// keepExcepted returns the exceptions whose file ID verification found missing or short.
func keepExcepted(list []Exception, used []string) []Exception {
	u := make(map[string]bool, len(used))
	for _, id := range used {
		u[id] = true
	}
	var out []Exception
	for _, e := range list {
		if u[e.FileID] {
			out = append(out, e)
			delete(u, e.FileID)
		}
	}
	return out
}
