package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/store"
)

func newPruneCmd() *cobra.Command {
	var f storeFlags
	var dryRun, yes bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete old snapshots as the retention policy says",
		Long: `Apply the device's retention policy from the settings: by default, when all snapshots
together hold more than half the size of the latest backup, the oldest ones older than
30 days are deleted. The latest backup, archives and pinned snapshots are never deleted.
When the policy asks before deleting, prune only shows what it would delete unless --yes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, udid, err := f.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			ds, err := deviceSettings(udid)
			if err != nil {
				return err
			}
			policy := app.Policy(ds.Snapshots)
			d, deleted, err := s.Prune(cmd.Context(), udid, policy, store.PruneOptions{DryRun: dryRun, Approve: yes})
			out := cmd.OutOrStdout()
			writeDecision(out, d)
			if err != nil {
				return err
			}
			switch {
			case dryRun:
				fmt.Fprintln(out, "dry run: nothing deleted")
			case len(deleted) > 0:
				fmt.Fprintf(out, "deleted %d snapshots\n", len(deleted))
			case d.NeedsApproval():
				fmt.Fprintf(out, "%d snapshots wait for approval; run again with --yes to delete them\n", len(d.Pending))
			default:
				fmt.Fprintln(out, "nothing to delete")
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show the decision, delete nothing")
	cmd.Flags().BoolVar(&yes, "yes", false, "approve deletions the policy asks about")
	return cmd
}

func writeDecision(w io.Writer, d store.Decision) {
	if d.LimitBytes > 0 {
		fmt.Fprintf(w, "snapshots hold %s; limit %s; after pruning %s\n",
			humanBytes(d.ExtraBytes), humanBytes(d.LimitBytes), humanBytes(d.ExtraAfterBytes))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range d.Keep {
		fmt.Fprintf(tw, "keep\t%s\t%s\n", v.ID, v.Reason)
	}
	for _, v := range d.Delete {
		fmt.Fprintf(tw, "delete\t%s\t%s\n", v.ID, v.Reason)
	}
	for _, v := range d.Pending {
		fmt.Fprintf(tw, "ask\t%s\t%s\n", v.ID, v.Reason)
	}
	tw.Flush()
}
