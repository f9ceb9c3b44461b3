package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"snapback/notify/push"
	"snapback/settings"
)

// newAlertsCmd is `snapback alerts`: store an alert URL in the keychain, send a test alert.
func newAlertsCmd(d deps) *cobra.Command {
	return group("alerts", "Push alerts (ntfy, e-mail, Telegram, webhooks...): store a URL, send a test", "",
		newAlertsTestCmd(d), newAlertsSetCmd(d))
}

func newAlertsTestCmd(d deps) *cobra.Command {
	return command("test", "Send a test message through every configured alert channel", func(cmd *cobra.Command) error {
		_, s, err := settingsFile()
		if err != nil {
			return err
		}
		// Every distinct url of the file: the global list and each device's own.
		var refs []string
		for _, list := range append([][]settings.Alert{s.Global.Alerts}, deviceAlerts(s)...) {
			for _, a := range list {
				if !slices.Contains(refs, a.URL) {
					refs = append(refs, a.URL)
				}
			}
		}
		out := cmd.OutOrStdout()
		if len(refs) == 0 {
			return errors.New("no alert channels configured; fix: add an alerts: entry to the settings file (snapback config init writes an example)")
		}
		secrets := d.secrets
		failed := 0
		for _, ref := range refs {
			label := settings.Redact(ref)
			u, err := settings.ResolveURL(cmd.Context(), ref, secrets)
			if err == nil {
				err = push.Test(cmd.Context(), nil, []push.Channel{{Label: label, URL: u}},
					"Snapback test alert", "This is a test from Snapback. Alerts about your iPhone and iPad backups arrive here.")[0]
			}
			if err != nil {
				failed++
				fmt.Fprintf(out, "FAILED %s: %v\n", label, err)
				continue
			}
			fmt.Fprintf(out, "sent   %s\n", label)
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d alert channels failed", failed, len(refs))
		}
		return nil
	})
}

// alertURLProblems checks the literal alert URLs against the notification library (a known
// service, a configuration it can parse), one problem per URL under the key that sets it. URLs
// kept in the keychain or a file are checked by `snapback alerts test` and at daemon start.
func alertURLProblems(s *settings.Settings) error {
	var probs []error
	seen := map[string]bool{}
	check := func(prefix string, alerts []settings.Alert) {
		for i, a := range alerts {
			if seen[a.URL] || settings.IsSecretRef(a.URL) {
				continue
			}
			seen[a.URL] = true
			if err := push.Check(a.URL); err != nil {
				probs = append(probs, &settings.Problem{Key: fmt.Sprintf("%salerts[%d].url", prefix, i), Problem: err.Error(),
					Fix: "use a service URL the notification library knows (ntfy://, smtp://, telegram://, generic+https://...; see github.com/nicholas-fedor/shoutrrr)"})
			}
		}
	}
	check("", s.Global.Alerts)
	for i, d := range s.Devices {
		check(fmt.Sprintf("devices[%d].", i), d.Effective.Alerts)
	}
	return errors.Join(probs...)
}

func deviceAlerts(s *settings.Settings) [][]settings.Alert {
	var out [][]settings.Alert
	for _, d := range s.Devices {
		out = append(out, d.Effective.Alerts)
	}
	return out
}

func newAlertsSetCmd(d deps) *cobra.Command {
	return &cobra.Command{
		Use:   "set NAME",
		Short: "Store an alert or ping URL that holds a secret in the OS keychain (then write url: keyring:NAME)",
		Long: `Reads the URL without echo from the terminal, or one line from stdin, and stores it in the OS
keychain under NAME. The settings file then refers to it as keyring:NAME, so the token or
password never appears in the file, a log, the process list or the status page.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			u, err := readURL(cmd.Context(), cmd.InOrStdin(), cmd.ErrOrStderr(), name)
			if err != nil {
				return err
			}
			if err := d.secrets.Set(cmd.Context(), settings.AlertSecretKey(name), u); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored; use  url: keyring:%s  in the settings file\n", name)
			return nil
		},
	}
}

// readURL reads an alert URL that holds a secret, like a password (see readSecret).
func readURL(ctx context.Context, in io.Reader, prompt io.Writer, name string) (string, error) {
	b, err := readSecret(ctx, in, prompt, fmt.Sprintf("URL for %s (not shown): ", name), "URL")
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(b))
	if !strings.Contains(line, "://") {
		return "", errors.New("that is not a service URL (such as ntfy://ntfy.sh/topic or smtp://user:pass@host:587/?to=you@example.org); nothing stored")
	}
	return line, nil
}
