//go:build unix

package browse

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"snapback/internal/backupfmt"
	"snapback/internal/browse/browsetest"
	"snapback/internal/failure"

	_ "modernc.org/sqlite"
)

func TestSymlinkedBlobNotFollowed(t *testing.T) {
	dir, _ := newFixture(t, fixtureFiles(), "")
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)
	blob := backupfmt.BlobPath(dir, backupfmt.FileID("HomeDomain", "Library/Notes/notes.txt"))
	os.Remove(blob)
	if err := os.Symlink(secret, blob); err != nil {
		t.Fatal(err)
	}
	b := openFixture(t, dir, "")
	out := t.TempDir()
	st, err := b.Extract(context.Background(), Filter{}, out, ExtractOptions{})
	if !errors.Is(err, ErrUnsafePath) || len(st.Refused) != 1 || !strings.Contains(st.Refused[0], "notes.txt") {
		t.Fatalf("extract with a symlinked blob: %v, refused %v; want it refused and reported", err, st.Refused)
	}
	if st.Files < 5 {
		t.Errorf("only %d files extracted; the others must still be", st.Files)
	}
	if _, err := os.Stat(filepath.Join(out, "HomeDomain", "Library/Notes/notes.txt")); err == nil {
		t.Error("the symlink's target was copied out")
	}
	if err := Validate(context.Background(), dir); failure.ClassOf(err) != failure.Damaged || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Validate: %v, want damaged naming the symlinked blob", err)
	}
}

func TestUndecodableRowSkipped(t *testing.T) {
	dir, _ := newFixture(t, fixtureFiles(), "")
	db, err := sql.Open("sqlite", filepath.Join(dir, "Manifest.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE Files SET file = X'626f67757300' WHERE relativePath = 'Library/SMS/sms.db'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b := openFixture(t, dir, "")
	paths := listPaths(t, b, Filter{})
	if len(paths) != len(fixtureFiles())-1 || len(b.Undecodable()) != 1 || !strings.Contains(b.Undecodable()[0], "sms.db") {
		t.Fatalf("list: %d rows, undecodable %q; want all but the damaged row, which is named", len(paths), b.Undecodable())
	}
	st, err := b.Extract(context.Background(), Filter{}, t.TempDir(), ExtractOptions{})
	if !errors.Is(err, ErrDamagedRow) || st.Files < 5 {
		t.Errorf("extract: %v after %d files; want the rest extracted and the damaged row reported", err, st.Files)
	}
	if err := Validate(context.Background(), dir); failure.ClassOf(err) != failure.Damaged || !strings.Contains(err.Error(), "sms.db") {
		t.Errorf("Validate: %v, want damaged naming the row", err)
	}
}

func TestValidateTruncatedManifest(t *testing.T) {
	dir, _ := newFixture(t, fixtureFiles(), "")
	if err := Validate(context.Background(), dir); err != nil {
		t.Fatalf("Validate of a good backup: %v", err)
	}
	db := filepath.Join(dir, "Manifest.db")
	fi, _ := os.Stat(db)
	if err := os.Truncate(db, fi.Size()/3); err != nil {
		t.Fatal(err)
	}
	if err := Validate(context.Background(), dir); failure.ClassOf(err) != failure.Damaged {
		t.Errorf("Validate of a truncated Manifest.db: %v, want class damaged", err)
	}
	missing, _ := newFixture(t, []browsetest.File{{Domain: "HomeDomain", RelativePath: "gone", Content: []byte("x"), NoBlob: true}}, "")
	if err := Validate(context.Background(), missing); failure.ClassOf(err) != failure.Damaged || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Validate with a missing blob: %v", err)
	}
}
