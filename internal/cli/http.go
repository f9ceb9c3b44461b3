package cli

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/statuspage"
)

// newHTTPCmd is `snapback http`: the status page's token.
func newHTTPCmd() *cobra.Command {
	var asURL bool
	token := &cobra.Command{
		Use:   "token",
		Short: "Print the status page's token (created on first use)",
		Long: `Prints the token that the status page's buttons, and every request when http.listen is not a
loopback address, require. With --url, prints the page's address with the token: opening it
once stores the token in the browser.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := app.HTTPTokenPath()
			if err != nil {
				return err
			}
			t, err := statuspage.LoadOrCreateToken(path)
			if err != nil {
				return err
			}
			if !asURL {
				fmt.Fprintln(cmd.OutOrStdout(), t)
				return nil
			}
			cfg, s, err := settingsFile()
			if err != nil {
				return err
			}
			if s.HTTP.Listen == "" {
				return fmt.Errorf("the status page is off; fix: set http.listen (e.g. 127.0.0.1:8427) in %s", cfg)
			}
			host, port, _ := net.SplitHostPort(s.HTTP.Listen)
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "localhost"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "http://%s/?token=%s\n", net.JoinHostPort(host, port), t)
			return nil
		},
	}
	token.Flags().BoolVar(&asURL, "url", false, "print the page's address with the token")
	return group("http", "The status page (settings key http.listen)", "", token)
}
