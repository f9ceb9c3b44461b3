package cli

import (
	"fmt"
	"strings"

	"snapback/internal/store"

	"github.com/spf13/cobra"
)

// verifyData runs snapshots verify --data: every damaged file is named with every snapshot
// that shares it; the error (class damaged, exit code 9) says how many.
func verifyData(cmd *cobra.Command, s *store.Store, udid string) error {
	rep, err := s.VerifyData(cmd.Context(), udid)
	out := cmd.OutOrStdout()
	for _, d := range rep.Damaged {
		fmt.Fprintf(out, "DAMAGED %s: %s; in snapshots %s\n", d.Path, d.Reason, strings.Join(d.Snapshots, ", "))
	}
	if rep.Files > 0 {
		secs := rep.Elapsed.Seconds()
		fmt.Fprintf(out, "read %d files, %s in %.1f s (%.0f MB/s)", rep.Files, humanBytes(rep.Bytes), secs, float64(rep.Bytes)/1e6/max(secs, 1e-3))
		if rep.Unindexed > 0 {
			fmt.Fprintf(out, "; %d files have no recorded hash (written by another tool) and were not checked", rep.Unindexed)
		}
		fmt.Fprintln(out)
	}
	if err == nil && len(rep.Damaged) == 0 {
		fmt.Fprintln(out, "ok: no damaged files")
	}
	return err
}
