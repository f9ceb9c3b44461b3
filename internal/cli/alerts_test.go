package cli

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"snapback/settings"
	"snapback/settings/settingstest"
)

func alertsRun(stdin string, args ...string) (string, error) {
	root := &cobra.Command{Use: "snapback", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newAlertsCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestAlertsSetAndTest stores a webhook URL with `alerts set`, then `alerts test` sends through
// every channel: the stored one arrives, a channel that is down is reported without its secret.
func TestAlertsSetAndTest(t *testing.T) {
	dir := cfgTestEnv(t)
	const secret = "planted-test-secret-0c41"
	hook := newReceiver(t)
	sec := settingstest.NewSecrets(nil)
	withSecrets(t, sec)
	if out, err := alertsRun("generic+"+hook.srv.URL+"/hook?template=json&token="+secret+"\n", "alerts", "set", "hook"); err != nil || !strings.Contains(out, "keyring:hook") {
		t.Fatalf("alerts set: %q %v", out, err)
	}
	if _, err := sec.Get(t.Context(), settings.AlertSecretKey("hook")); err != nil {
		t.Fatalf("the URL is not in the keychain: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	writeConfig(t, dir, fmt.Sprintf("alerts:\n  - url: keyring:hook\n  - url: generic+http://%s/x/%s?template=json\n", down, secret))

	out, err := alertsRun("", "alerts", "test")
	if err == nil || !strings.Contains(err.Error(), "1 of 2") {
		t.Fatalf("alerts test with one channel down: %v\n%s", err, out)
	}
	if !strings.Contains(out, "sent   keyring:hook") || !strings.Contains(out, "FAILED generic+http://"+down+"/REDACTED") {
		t.Fatalf("alerts test output:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("alerts test printed the secret:\n%s", out)
	}
	if !hook.find("Snapback test alert", "This is a test") {
		t.Fatal("the test message did not reach the webhook")
	}
}

func TestConfigCheckNamesAnUnknownAlertService(t *testing.T) {
	dir := cfgTestEnv(t)
	writeConfig(t, dir, "alerts:\n  - url: ntfy://ntfy.sh/fine\n  - url: nfty://ntfy.sh/planted-topic-77\n")
	_, err := cfgTestRun(t, "", "config", "check")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "alerts[1].url:") || !strings.Contains(err.Error(), "fix:") ||
		strings.Contains(err.Error(), "alerts[0].url") || strings.Contains(err.Error(), "planted-topic-77") {
		t.Fatalf("config check: exit %d, %v", exitCode(err), err)
	}
}
