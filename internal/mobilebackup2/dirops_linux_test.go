//go:build linux

package mobilebackup2

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The upload file object is handed out again once taken back, and what it says is always
// the file just created: its stat, its name. A name of NAME_MAX bytes still fits the stack
// buffer with its NUL; a longer one, or one holding NUL, takes unix.Openat's way, and the
// kernel's answer is the same either way.
func TestUploadFilesReuseOneObject(t *testing.T) {
	dir := t.TempDir()
	d, err := openRootDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDir(d)
	var files uploadFiles
	write := func(name, content string) (uploadFile, fs.FileInfo) {
		t.Helper()
		f, err := files.create(d, name, 0o444)
		if err != nil {
			t.Fatalf("create %.20s…: %v", name, err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return f, fi
	}
	long := strings.Repeat("l", 255) // NAME_MAX: with its NUL, exactly the stack buffer
	first, fi := write("a", "one")
	if fi.Name() != "a" || fi.Size() != 3 || fi.Mode().Perm() != 0o444 {
		t.Errorf("first upload: %s %d %v; want a, 3 bytes, 0444", fi.Name(), fi.Size(), fi.Mode())
	}
	files.reuse(first)
	second, fi := write(long, "second")
	if second != first {
		t.Error("a new object for the second upload; want the one taken back")
	}
	st, err := os.Lstat(filepath.Join(dir, long))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name() != long || fi.Size() != 6 || fi.Sys().(*syscall.Stat_t).Ino != st.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("second upload: %.20s… %d bytes; want the long name's file, 6 bytes", fi.Name(), fi.Size())
	}
	// Not taken back: the next upload must not share it.
	if third, _ := write("c", "3"); third == second {
		t.Error("an object still in use was handed out again")
	}
	if _, err := files.create(d, "a", 0o644); !errors.Is(err, fs.ErrExist) {
		t.Errorf("create over an existing name: %v; want it refused (O_EXCL)", err)
	}
	if _, err := files.create(d, long+"l", 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("create of a %d-byte name: %v; want ENAMETOOLONG", len(long)+1, err)
	}
	if _, err := files.create(d, "nul\x00name", 0o644); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("create of a name holding NUL: %v; want EINVAL", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a")); err != nil || string(b) != "one" {
		t.Errorf("a holds %q, %v; want what was written first", b, err)
	}
}
