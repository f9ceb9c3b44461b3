package cli

import (
	"fmt"
	"time"

	"snapback/internal/store"

	"github.com/spf13/cobra"
)

// newLocationCmd manages the backup destinations this computer remembers. Remembering them
// is what lets a backup refuse an unplugged disk's empty mount point; forgetting one is the
// deliberate way to start backing up to a new disk mounted in the same place.
func newLocationCmd() *cobra.Command {
	return group("location", "List or forget the backup destinations this computer has used", "", &cobra.Command{
		Use:   "list",
		Short: "List known backup destinations and the filesystem recorded for each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			known, err := store.KnownLocations(store.Options{})
			if err != nil {
				return err
			}
			for _, d := range known {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\tvolume %s\tlast used %s\n", d.Dir, d.Volume.Identity, d.Volume.ID, d.Seen.Local().Format(time.DateTime))
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "forget DIR",
		Short: "Forget DIR's recorded disk, so the next backup starts afresh on whatever disk is mounted there",
		Long: `A backup location remembers the disk (filesystem) it was first used on, and a backup
refuses to run when that disk is not mounted. After replacing the backup disk with a new
one mounted in the same place, forget the location: the next backup initialises it on the
new disk. Backups on the old disk are not touched.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			found, err := store.ForgetLocation(store.Options{}, args[0])
			if err != nil {
				return err
			}
			if !found {
				fmt.Fprintf(cmd.OutOrStdout(), "%s was not a known backup location\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Forgot %s; the next backup there starts a new history on the disk mounted then\n", args[0])
			return nil
		},
	})
}
