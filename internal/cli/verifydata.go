package cli

import (
	"fmt"
	"strings"

	"snapback/internal/store"

	"github.com/spf13/cobra"
)

// withDataFlag adds --data to snapshots verify: with it, the command re-reads every stored
// file instead of checking the folders' structure.
func withDataFlag(verify *cobra.Command) *cobra.Command {
	var data bool
	structural := verify.RunE
	verify.Flags().BoolVar(&data, "data", false, "re-read every stored file (each shared file once) and compare it with the hash recorded when it was written")
	verify.Short += "; --data re-reads every file's content"
	verify.RunE = func(cmd *cobra.Command, args []string) error {
		if !data {
			return structural(cmd, args)
		}
		var f storeFlags
		f.udid, _ = cmd.Flags().GetString("udid")
		if loc := cmd.Flags().Lookup("location"); loc != nil {
			f.dir = loc.Value.String()
		} else {
			f.dir, _ = cmd.Flags().GetString("dir")
		}
		s, udid, err := f.open(cmd.Context(), true)
		if err != nil {
			return err
		}
		return verifyData(cmd, s, udid)
	}
	return verify
}

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
