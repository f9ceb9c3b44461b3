package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
	"snapback/internal/browse/browsetest"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/settings"
	"snapback/settings/settingstest"
)

const filesTestUDID = "00008110-000A1B2C3D4E5F60"

var (
	filesPhoto = bytes.Repeat([]byte("JPEG"), 300_000)
	filesSMS   = []byte("SQLite format 3\x00 pretend sms")
	filesTime  = time.Date(2021, 12, 24, 18, 30, 0, 0, time.UTC)
)

func filesFixture(t *testing.T, parent, password string, extra ...browsetest.File) string {
	t.Helper()
	dir := filepath.Join(parent, filesTestUDID)
	files := append([]browsetest.File{
		{Domain: "HomeDomain", RelativePath: "Library", Flags: backupfmt.FlagDir},
		{Domain: "HomeDomain", RelativePath: "Library/SMS/sms.db", Content: filesSMS, Modified: filesTime},
		{Domain: "CameraRollDomain", RelativePath: "Media/DCIM/100APPLE/IMG_0001.JPG", Content: filesPhoto, Modified: filesTime},
		{Domain: "HomeDomain", RelativePath: "Library/bad\x1b[31mname", Content: []byte("x")},
	}, extra...)
	if err := browsetest.Write(dir, files, browsetest.Options{Password: password}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// filesRun runs one of cmd_files.go's commands under a bare root, as main would.
func filesRun(t *testing.T, d deps, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "snapback", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newFilesCmd(d), newExtractCmd(d), newPhotosCmd(d))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

func filesTreeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "|" + fi.Mode().String() + "|" + fi.ModTime().String() + "\x00"))
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

func TestFilesCommands(t *testing.T) {
	keys := deps{secrets: &settingstest.Secrets{}} // an empty keychain: the password is typed
	for _, password := range []string{"", "pass word"} {
		name := "plain"
		if password != "" {
			name = "encrypted"
		}
		t.Run(name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir()) // where the decrypted Manifest.db goes; checked below
			dir := filesFixture(t, t.TempDir(), password)
			before := filesTreeHash(t, dir)
			stdin := password + "\n"

			out, _, err := filesRun(t, keys, stdin, "files", "--dir", dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"HomeDomain", "Library/SMS/sms.db", "Library/", "CameraRollDomain", "Media/DCIM/100APPLE/IMG_0001.JPG",
				"1200000", time.Unix(filesTime.Unix(), 0).Format("2006-01-02 15:04:05"), `"Library/bad\x1b[31mname"`} {
				if !strings.Contains(out, want) {
					t.Errorf("files output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "\x1b") {
				t.Error("files printed a raw escape sequence from the Manifest")
			}
			out, _, err = filesRun(t, keys, stdin, "files", "--dir", dir, "--domain", "CameraRollDomain", "*.jpg")
			if err != nil || strings.Contains(out, "sms.db") {
				t.Errorf("files --domain: %v\n%s", err, out)
			}

			to := filepath.Join(t.TempDir(), "out")
			out, _, err = filesRun(t, keys, stdin, "extract", "--dir", dir, "sms", "--to", to)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "extracted 1 file ") {
				t.Errorf("extract output = %q", out)
			}
			filesCheck(t, filepath.Join(to, "HomeDomain/Library/SMS/sms.db"), filesSMS)

			photos := filepath.Join(t.TempDir(), "photos")
			if _, _, err := filesRun(t, keys, stdin, "photos", "--dir", dir, "--to", photos); err != nil {
				t.Fatal(err)
			}
			filesCheck(t, filepath.Join(photos, "100APPLE/IMG_0001.JPG"), filesPhoto)

			if after := filesTreeHash(t, dir); after != before {
				t.Error("the backup folder changed")
			}
			if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
				t.Errorf("temp folder not cleaned: %v", left)
			}
		})
	}
}

func filesCheck(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: content differs (%d bytes, want %d)", p, len(got), len(want))
	}
	if fi, _ := os.Stat(p); !fi.ModTime().Equal(filesTime) {
		t.Errorf("%s: mtime %v; want %v", p, fi.ModTime(), filesTime)
	}
}

func TestFilesPasswordErrors(t *testing.T) {
	keys := deps{secrets: &settingstest.Secrets{}} // an empty keychain: the password is typed
	dir := filesFixture(t, t.TempDir(), "right")
	_, _, err := filesRun(t, keys, "wrong\n", "files", "--dir", dir)
	if !errors.Is(err, backupcrypto.ErrWrongPassword) || exitCode(err) != failure.ExitPassword {
		t.Errorf("wrong password: err %v, exit %d; want ErrWrongPassword, 3", err, exitCode(err))
	}
	if _, _, err := filesRun(t, keys, "", "files", "--dir", dir); err == nil || !strings.Contains(err.Error(), "stdin is empty") {
		t.Errorf("no password: err %v", err)
	}
	// A last line without newline is the password.
	if _, _, err := filesRun(t, keys, "right", "files", "--dir", dir); err != nil {
		t.Errorf("password without newline: %v", err)
	}
	// Windows line endings.
	if _, _, err := filesRun(t, keys, "right\r\n", "files", "--dir", dir); err != nil {
		t.Errorf("password with CRLF: %v", err)
	}
}

func TestFilesFromStore(t *testing.T) {
	keys := deps{secrets: &settingstest.Secrets{}} // an empty keychain: the password is typed
	loc := t.TempDir()
	filesFixture(t, loc, "")
	out, _, err := filesRun(t, keys, "", "files", "--udid", filesTestUDID, "--location", loc, "sms")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Library/SMS/sms.db") {
		t.Errorf("files --udid output:\n%s", out)
	}
	if _, _, err := filesRun(t, keys, "", "files", "--udid", filesTestUDID, "--location", loc, "--snapshot", "20000101-000000"); err == nil {
		t.Error("unknown snapshot accepted")
	}
	if _, _, err := filesRun(t, keys, "", "files", "--udid", "nosuchdevice", "--location", loc); err == nil {
		t.Error("unknown device accepted")
	}
	if _, _, err := filesRun(t, keys, "", "files", "--dir", loc, "--udid", filesTestUDID); err == nil {
		t.Error("--dir and --udid together accepted")
	}
	if _, _, err := filesRun(t, keys, "", "files"); err == nil {
		t.Error("neither --dir nor --udid accepted")
	}
}

func TestExtractRefusesHostilePaths(t *testing.T) {
	keys := deps{secrets: &settingstest.Secrets{}} // an empty keychain: the password is typed
	dir := filesFixture(t, t.TempDir(), "pw", browsetest.File{Domain: "HomeDomain", RelativePath: "../../../../tmp/evil", Content: []byte("evil")})
	before := filesTreeHash(t, dir)
	base := t.TempDir()
	to := filepath.Join(base, "x", "out")
	_, stderr, err := filesRun(t, keys, "pw\n", "extract", "--dir", dir, "**", "--to", to)
	if err == nil || !strings.Contains(stderr, "refused unsafe path") {
		t.Errorf("extract of a hostile row: err %v, stderr %q", err, stderr)
	}
	filesCheck(t, filepath.Join(to, "HomeDomain/Library/SMS/sms.db"), filesSMS)
	if _, err := os.Stat(filepath.Join(base, "tmp")); err == nil {
		t.Error("a hostile row escaped the output folder")
	}
	if _, _, err := filesRun(t, keys, "pw\n", "extract", "--dir", dir, "**", "--to", filepath.Join(dir, "out")); err == nil {
		t.Error("extract into the backup folder accepted")
	}
	if after := filesTreeHash(t, dir); after != before {
		t.Error("the backup folder changed")
	}
}

// TestBrowseUsesKeychainPassword: files, extract and photos open an encrypted backup with
// the password the keychain holds for its device and ask only when none is stored (or the
// stored one no longer opens it). --dir takes the folder that holds <UDID>/, and --udid
// without --location reads the device's configured location.
func TestBrowseUsesKeychainPassword(t *testing.T) {
	const pw = "kept-in-Keychain-77"
	cfgTestEnv(t)
	parent := t.TempDir()
	dir := filesFixture(t, parent, pw)
	cfg, _ := settings.ConfigPath()
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	os.WriteFile(cfg, []byte("location: "+parent+"\n"), 0o600)

	secrets := settingstest.NewSecrets(map[string]string{filesTestUDID: pw})
	keys := deps{secrets: secrets}
	var all strings.Builder
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		out, errOut, err := filesRun(t, keys, stdin, args...)
		all.WriteString(out + errOut)
		return out + errOut, err
	}
	// Nothing on stdin: a prompt would fail with "stdin is empty".
	if out, err := run("", "files", "--dir", parent, "sms"); err != nil || !strings.Contains(out, "Library/SMS/sms.db") {
		t.Fatalf("files --dir <folder holding UDID/> with the keychain's password: %v\n%s", err, out)
	}
	if _, err := run("", "photos", "--udid", filesTestUDID, "--to", filepath.Join(t.TempDir(), "p")); err != nil {
		t.Fatalf("photos --udid from the configured location with the keychain's password: %v", err)
	}
	secrets.Set(t.Context(), filesTestUDID, "an-outdated-one")
	out, err := run(pw+"\n", "extract", "--dir", dir, "sms", "--to", filepath.Join(t.TempDir(), "x"))
	if err != nil || !strings.Contains(out, "does not open this backup") {
		t.Fatalf("an outdated keychain password must fall back to asking, and say so: %v\n%s", err, out)
	}
	secrets.Delete(t.Context(), filesTestUDID)
	if _, err := run("", "files", "--dir", dir); err == nil || !strings.Contains(err.Error(), "stdin is empty") {
		t.Fatalf("with no stored password the terminal must be asked: %v", err)
	}
	if strings.Contains(all.String(), pw) {
		t.Error("the password appears in the output")
	}
}

// TestBrowseStoreRecoveryFails: files, extract and photos open the store the way every other
// command does (app.Stores), so a start-up recovery that fails is an error there too (exit
// code of its class, the cause named) instead of a warning followed by a listing of a store
// whose state nobody checked.
func TestBrowseStoreRecoveryFails(t *testing.T) {
	cfgTestEnv(t)
	keys := deps{secrets: &settingstest.Secrets{}}
	loc := t.TempDir()
	filesFixture(t, loc, "")
	// The store adopts the plain folder as the device's latest backup; Begin records the
	// location's volume, so Open recovers the device from then on.
	st, err := store.Open(t.Context(), loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := st.Begin(t.Context(), filesTestUDID, store.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run.Abort()
	if out, _, err := filesRun(t, keys, "", "files", "--udid", strings.ToLower(filesTestUDID), "--location", loc, "sms"); err != nil || !strings.Contains(out, "Library/SMS/sms.db") {
		t.Fatalf("files --udid <lower case> from a healthy store: %v\n%s", err, out)
	}
	// Damage from outside: a journal that recovery cannot read.
	journal := filepath.Join(st.Location(), store.VersionsDirName, filesTestUDID, "journal.json")
	if err := os.WriteFile(journal, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"files", "--udid", filesTestUDID, "--location", loc, "sms"},
		{"extract", "--udid", filesTestUDID, "--location", loc, "sms", "--to", filepath.Join(t.TempDir(), "x")},
		{"photos", "--udid", filesTestUDID, "--location", loc, "--to", filepath.Join(t.TempDir(), "p")},
	} {
		out, _, err := filesRun(t, keys, "", args...)
		if err == nil || !strings.Contains(err.Error(), "journal") {
			t.Errorf("%s with a store whose recovery fails: err %v, want the recovery's error\n%s", args[0], err, out)
		}
		if want := readmeExitCodes(t)[failure.LocalIO]; failure.ClassOf(err) != failure.LocalIO || exitCode(err) != want {
			t.Errorf("%s: class %s, exit %d; want %s, exit %d as the README documents", args[0], failure.ClassOf(err), exitCode(err), failure.LocalIO, want)
		}
		if strings.Contains(out, "sms.db") {
			t.Errorf("%s listed from a store whose recovery failed:\n%s", args[0], out)
		}
	}
}
