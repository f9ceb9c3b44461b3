package browse

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"snapback/internal/backupfmt"
	"snapback/internal/browse/browsetest"
	"snapback/internal/testenv"
)

// TestPythonOracle is a differential check of the writing side: an encrypted backup made by
// backupcrypto/browsetest is read by an independent Python reader (testdata/oracle.py, stdlib
// + python3-cryptography), which must decrypt every file to the original bytes and reject a
// wrong password. The reading side is checked the other way by the hashcat and RFC 3394
// vectors in backupcrypto.
func TestPythonOracle(t *testing.T) {
	if err := exec.Command("python3", "-c", "import cryptography.hazmat.primitives.keywrap").Run(); err != nil {
		testenv.Unavailable(t, "python3 with the cryptography module (Debian: python3-cryptography): %v", err)
	}
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "backup")
	files := fixtureFiles()
	if err := browsetest.Write(dir, files, browsetest.Options{Password: testPassword}); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(tmp, "want")
	os.Mkdir(want, 0o700)
	n := 0
	for _, f := range files {
		if f.Flags == 0 || f.Flags == backupfmt.FlagFile {
			os.WriteFile(filepath.Join(want, backupfmt.FileID(f.Domain, f.RelativePath)), f.Content, 0o600)
			n++
		}
	}
	run := func(password string) (string, error) {
		cmd := exec.Command("python3", filepath.Join("testdata", "oracle.py"), dir, want, t.TempDir())
		cmd.Stdin = strings.NewReader(password)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(testPassword)
	if err != nil || strings.TrimSpace(out) != "ok "+strconv.Itoa(n) {
		t.Fatalf("oracle: %v\n%s", err, out)
	}
	if out, err := run("wrong"); err == nil || !strings.Contains(out, "InvalidUnwrap") {
		t.Errorf("oracle accepted a wrong password: %v\n%s", err, out)
	}
}
