package mobilebackup2

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"snapback/internal/devicelink"
)

// blob returns a canonical file ID whose prefix folder is prefix and the device paths of
// its upload (Snapshot/) and its final place.
func blob(prefix string, n int) (id, staged, final string) {
	id = fmt.Sprintf("%s%038x", prefix, n)
	return id, testUDID + "/Snapshot/" + prefix + "/" + id, testUDID + "/" + prefix + "/" + id
}

func TestRedirectable(t *testing.T) {
	u := testUDID
	id := "ab" + strings.Repeat("0", 37) + "1"
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{u + "/Snapshot/ab/" + id, true},
		{u + "/ab/" + id, false},                                      // not an upload into Snapshot
		{u + "/Snapshot/cd/" + id, false},                             // wrong prefix folder
		{u + "/Snapshot/AB/" + strings.ToUpper(id), false},            // not as Apple writes it
		{u + "/Snapshot/ab/" + id[:39], false},                        // short
		{u + "/Snapshot/ab/" + id + "0", false},                       // long
		{u + "/Snapshot/ab/" + id[:38] + "g1", false},                 // not hex
		{u + "/Snapshot/Manifest.db", false},                          // metadata
		{"other/Snapshot/ab/" + id, false},                            // another UDID
		{u + "x/Snapshot/ab/" + id, false},                            // a longer first component
		{u + "/Snapshot/ab/../../" + id[:len(id)-6] + "/ab/x", false}, // same length, not canonical
	} {
		if _, ok := redirectable(u, tc.name); ok != tc.ok {
			t.Errorf("redirectable(%q) = %v, want %v", tc.name, ok, tc.ok)
		}
	}
}

// TestUploadsLandUnderFinalNames: in a folder that started empty (a first or full backup
// into the store's staging folder) an upload to <UDID>/Snapshot/xx/<id> is written straight
// to <UDID>/xx/<id>, so the device's move of it costs no rename; a name that exists keeps
// its file (a hard link to a committed one) until the move, and metadata takes the usual
// way. After the moves the folder is what the device made.
func TestUploadsLandUnderFinalNames(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	committed := filepath.Join(t.TempDir(), "committed")
	if err := os.WriteFile(committed, []byte("committed"), 0o444); err != nil {
		t.Fatal(err)
	}
	_, newStaged, newFinal := blob("ab", 1)
	_, oldStaged, oldFinal := blob("ab", 2)
	if err := os.MkdirAll(filepath.Join(root, u, "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(committed, filepath.Join(root, oldFinal)); err != nil {
		t.Fatal(err)
	}
	c, d := pair(t)
	var beforeMoves []string
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		for _, dir := range []string{u + "/Snapshot", u + "/Snapshot/ab", u + "/ab"} {
			if code, _, err := d.simple(devicelink.CreateDirectory, dir); code != 0 || err != nil {
				return fmt.Errorf("mkdir %s: %d %v", dir, code, err)
			}
		}
		if code, err := d.upload(upFile{name: newStaged, data: []byte("new")}, upFile{name: oldStaged, data: []byte("changed")},
			upFile{name: u + "/Snapshot/Status.plist", data: statusPlist(t, "finished")}); code != 0 || err != nil {
			return fmt.Errorf("upload %d %v", code, err)
		}
		beforeMoves = tree(t, root)
		moves := map[string]any{newStaged: newFinal, oldStaged: oldFinal, u + "/Snapshot/Status.plist": u + "/Status.plist"}
		if code, _, err := d.simple(devicelink.MoveItems, moves, map[string]any{}, 90.0); code != 0 || err != nil {
			return fmt.Errorf("move %d %v", code, err)
		}
		if code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/Snapshot"}, map[string]any{}, 95.0); code != 0 || err != nil {
			return fmt.Errorf("remove %d %v", code, err)
		}
		return d.finish(0, "")
	})
	if _, err := backupWith(t, c, BackupOptions{Root: root, DirectWrites: true, FileMode: 0o444}); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		u + "/ab/ d",
		newFinal + " f 0444 new",
		oldFinal + " f 0444 committed",
		u + "/Snapshot/ d",
		u + "/Snapshot/Status.plist f 0444 " + string(statusPlist(t, "finished")),
		u + "/Snapshot/ab/ d",
		oldStaged + " f 0444 changed",
	}
	if !slices.Equal(without(beforeMoves, u+"/ d"), sorted(want)) {
		t.Errorf("after the uploads:\n%s\nwant\n%s", strings.Join(beforeMoves, "\n"), strings.Join(sorted(want), "\n"))
	}
	after := tree(t, root)
	want = []string{u + "/ab/ d", newFinal + " f 0444 new", oldFinal + " f 0444 changed",
		u + "/Status.plist f 0444 " + string(statusPlist(t, "finished"))}
	if !slices.Equal(without(after, u+"/ d"), sorted(want)) {
		t.Errorf("after the moves:\n%s\nwant\n%s", strings.Join(after, "\n"), strings.Join(sorted(want), "\n"))
	}
	if b, _ := os.ReadFile(committed); string(b) != "committed" {
		t.Errorf("the committed file now holds %q", b)
	}
}

// TestRedirectWaitsForItsEntry: where the store clones the latest backup while the device
// works (EntryReady), a redirected upload writes into its prefix folder, so it must wait for
// that folder's clone first, as a move into it does.
func TestRedirectWaitsForItsEntry(t *testing.T) {
	root, latest := t.TempDir(), t.TempDir()
	u := testUDID
	_, staged, final := blob("ab", 1)
	keptID, _, kept := blob("ab", 2)
	if err := os.MkdirAll(filepath.Join(latest, "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(latest, "ab", keptID), []byte("kept"), 0o444); err != nil {
		t.Fatal(err)
	}
	entryReady, _ := cloneOnDemand(latest, filepath.Join(root, u))
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		for _, dir := range []string{u + "/Snapshot", u + "/Snapshot/ab", u + "/ab"} {
			if code, _, err := d.simple(devicelink.CreateDirectory, dir); code != 0 || err != nil {
				return fmt.Errorf("mkdir %s: %d %v", dir, code, err)
			}
		}
		if code, err := d.upload(upFile{name: staged, data: []byte("new")},
			upFile{name: u + "/Status.plist", data: statusPlist(t, "finished")}); code != 0 || err != nil {
			return fmt.Errorf("upload %d %v", code, err)
		}
		if code, _, err := d.simple(devicelink.MoveItems, map[string]any{staged: final}, map[string]any{}, 90.0); code != 0 || err != nil {
			return fmt.Errorf("move %d %v", code, err)
		}
		if code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/Snapshot"}, map[string]any{}, 95.0); code != 0 || err != nil {
			return fmt.Errorf("remove %d %v", code, err)
		}
		return d.finish(0, "")
	})
	backupCloned(t, c, root, true, entryReady, wait)
	for p, want := range map[string]string{final: "new", kept: "kept"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s holds %q (%v), want %q", p, b, err, want)
		}
	}
}

// TestRedirectIsInvisible runs random device sessions twice, once into a folder that takes
// uploads under their final names (DirectWrites) and once with the detour through Snapshot/
// (--dir), and requires the device to get the same answers and the folder to end the
// same. The sessions mix what real devices do (upload, move into place, remove Snapshot)
// with what they might: uploads that fail, uploads of a name twice, downloads and listings
// of uploaded files, moves elsewhere, removals of single files and whole folders, copies,
// folders created below a file, and sessions that end without moving everything.
func TestRedirectIsInvisible(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 60
	}
	redirected := 0
	for seed := range seeds {
		script := randomSession(uint64(seed))
		direct, n := playSession(t, script, true)
		detour, _ := playSession(t, script, false)
		redirected += n
		if !slices.Equal(direct, detour) {
			t.Fatalf("seed %d: the device sees a difference.\nsession:\n%s\nwith the redirect:\n%s\nwithout:\n%s",
				seed, strings.Join(script.describe(), "\n"), strings.Join(direct, "\n"), strings.Join(detour, "\n"))
		}
	}
	// The comparison proves nothing if no upload was ever redirected.
	if redirected < seeds/2 {
		t.Fatalf("only %d uploads redirected in %d sessions", redirected, seeds)
	}
}

// TestRedirectScenarios plays the sessions where a redirect is most likely to show, both
// ways, as TestRedirectIsInvisible does: each puts something under a blob name in Snapshot/
// by another way than an upload, or takes away a folder an upload needs, and then uploads
// and moves that name.
func TestRedirectScenarios(t *testing.T) {
	u := testUDID
	_, s0, f0 := blob("ab", 0)
	_, s1, f1 := blob("ab", 1) // f1 exists: a file of the latest backup
	up := func(name, data string) sessionOp { return sessionOp{kind: "upload", a: name, data: data} }
	mv := func(a, b string) sessionOp { return sessionOp{kind: "move", a: a, b: b} }
	for name, ops := range map[string][]sessionOp{
		"upload the usual way, then redirect the name": {up(s1, "changed"), {kind: "remove", a: f1}, up(s1, "again"), mv(s1, f1)},
		"a file moved to the name":                     {mv(f1, s0), up(s0, "new"), mv(s0, f0)},
		"a file copied to the name":                    {{kind: "copy", a: f1, b: s0}, up(s0, "new"), mv(s0, f0)},
		"a folder below the name":                      {{kind: "mkdir", a: s0 + "/sub"}, up(s0, "new"), mv(s0, f0)},
		"a folder moved over Snapshot/ab":              {mv(u+"/ab", u+"/Snapshot/ab"), {kind: "mkdir", a: u + "/ab"}, up(s1, "new"), mv(s1, f1)},
		"Snapshot/ab removed":                          {{kind: "remove", a: u + "/Snapshot/ab"}, up(s0, "new"), mv(s0, f0)},
		"redirected, then listed":                      {up(s0, "new"), {kind: "list", a: u + "/Snapshot/ab"}, {kind: "list", a: u + "/ab"}, mv(s0, f0)},
		"redirected twice, the second fails":           {up(s0, "one"), {kind: "upload", a: s0, data: "two", fail: true}, mv(s0, f0)},
		"redirected, never moved":                      {up(s0, "new")},
	} {
		t.Run(name, func(t *testing.T) {
			sess := session{mkFinal: true, ops: ops}
			direct, _ := playSession(t, sess, true)
			detour, _ := playSession(t, sess, false)
			if !slices.Equal(direct, detour) {
				t.Fatalf("the device sees a difference.\nwith the redirect:\n%s\nwithout:\n%s", strings.Join(direct, "\n"), strings.Join(detour, "\n"))
			}
		})
	}
}

type sessionOp struct {
	kind string
	a, b string
	data string
	fail bool
}

type session struct {
	mkFinal bool // whether the device creates the final prefix folders before uploading
	ops     []sessionOp
}

func (s session) describe() []string {
	out := []string{fmt.Sprintf("mkFinal=%v", s.mkFinal)}
	for _, op := range s.ops {
		out = append(out, fmt.Sprintf("%s %s %s %q fail=%v", op.kind, op.a, op.b, op.data, op.fail))
	}
	return out
}

// randomSession makes a session over three new files (two in one prefix folder) and one of
// the latest backup: first uploads as a device makes them, then anything, weighted towards
// what makes a redirect and what may see one.
func randomSession(seed uint64) session {
	r := rand.New(rand.NewPCG(seed, 7))
	u := testUDID
	type name struct{ staged, final string }
	var names []name
	for _, b := range [][2]any{{"ab", 0}, {"ab", 2}, {"cd", 9}, {"ab", 1}} { // ab…1 exists
		_, s, f := blob(b[0].(string), b[1].(int))
		names = append(names, name{s, f})
	}
	pick := func() name {
		if r.IntN(8) == 0 {
			return names[3]
		}
		return names[r.IntN(3)]
	}
	either := func() string {
		n := pick()
		if r.IntN(2) == 0 {
			return n.staged
		}
		return n.final
	}
	folders := []string{u + "/Snapshot/ab", u + "/ab", u + "/Snapshot", u + "/cd", u + "/Snapshot/cd", u}
	sess := session{mkFinal: r.IntN(4) != 0}
	for i := range 1 + r.IntN(3) {
		sess.ops = append(sess.ops, sessionOp{kind: "upload", a: names[i].staged, data: fmt.Sprintf("first%d", i)})
	}
	for i := range 8 + r.IntN(24) {
		n := pick()
		data := fmt.Sprintf("v%d", i)
		switch k := r.IntN(24); {
		case k < 6:
			sess.ops = append(sess.ops, sessionOp{kind: "upload", a: n.staged, data: data, fail: r.IntN(5) == 0})
		case k < 7:
			sess.ops = append(sess.ops, sessionOp{kind: "upload", a: n.final, data: data, fail: r.IntN(5) == 0})
		case k < 11:
			sess.ops = append(sess.ops, sessionOp{kind: "move", a: n.staged, b: n.final})
		case k < 12:
			sess.ops = append(sess.ops, sessionOp{kind: "move", a: either(), b: either()})
		case k < 13:
			sess.ops = append(sess.ops, sessionOp{kind: "move", a: folders[r.IntN(len(folders))], b: folders[r.IntN(len(folders))]})
		case k < 15:
			sess.ops = append(sess.ops, sessionOp{kind: "remove", a: either()})
		case k < 16:
			sess.ops = append(sess.ops, sessionOp{kind: "remove", a: folders[r.IntN(len(folders))]})
		case k < 18:
			sess.ops = append(sess.ops, sessionOp{kind: "download", a: either()})
		case k < 20:
			sess.ops = append(sess.ops, sessionOp{kind: "list", a: folders[r.IntN(3)]})
		case k < 21:
			sess.ops = append(sess.ops, sessionOp{kind: "mkdir", a: either() + "/sub"})
		case k < 22:
			sess.ops = append(sess.ops, sessionOp{kind: "mkdir", a: folders[r.IntN(len(folders))]})
		default:
			sess.ops = append(sess.ops, sessionOp{kind: "copy", a: either(), b: either()})
		}
	}
	return sess
}

// playSession runs sess against a fresh folder that holds one file of the latest backup
// (as a store's staging folder would) and returns what the device saw and what the folder
// ended as, and how many uploads were redirected.
func playSession(t *testing.T, sess session, direct bool) ([]string, int) {
	t.Helper()
	root := t.TempDir()
	u := testUDID
	_, _, existing := blob("ab", 1)
	if err := os.MkdirAll(filepath.Join(root, u, "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, existing), []byte("latest"), 0o444); err != nil {
		t.Fatal(err)
	}
	c, d := pair(t)
	var seen []string
	redirected := 0
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		dirs := []string{u + "/Snapshot", u + "/Snapshot/ab", u + "/Snapshot/cd"}
		if sess.mkFinal {
			dirs = append(dirs, u+"/cd")
		}
		for _, dir := range dirs {
			if code, _, err := d.simple(devicelink.CreateDirectory, dir); code != 0 || err != nil {
				return fmt.Errorf("mkdir %s: %d %v", dir, code, err)
			}
		}
		for _, op := range sess.ops {
			var code int64
			var extra any
			var err error
			switch op.kind {
			case "upload":
				f := upFile{name: op.a, data: []byte(op.data)}
				if op.fail {
					f.remoteErr = "unreadable"
				}
				code, err = d.upload(f)
				if _, ok := redirectable(u, op.a); ok && !op.fail {
					if _, serr := os.Lstat(filepath.Join(root, finalName(u, op.a))); serr == nil {
						if b, _ := os.ReadFile(filepath.Join(root, finalName(u, op.a))); string(b) == op.data {
							redirected++
						}
					}
				}
			case "move":
				code, _, err = d.simple(devicelink.MoveItems, map[string]any{op.a: op.b}, map[string]any{}, 50.0)
			case "remove":
				code, _, err = d.simple(devicelink.RemoveItems, []any{op.a}, map[string]any{}, 50.0)
			case "download":
				var got map[string][]byte
				got, code, err = d.download(op.a)
				extra = fmt.Sprintf("%q", got[op.a])
			case "list":
				code, extra, err = d.simple(devicelink.ContentsOfDirectory, op.a)
				extra = listing(extra)
			case "mkdir":
				code, _, err = d.simple(devicelink.CreateDirectory, op.a)
			case "copy":
				code, _, err = d.simple(devicelink.CopyItem, op.a, op.b)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", op.kind, op.a, err)
			}
			seen = append(seen, fmt.Sprintf("%s %s %s → %d %v", op.kind, op.a, op.b, code, extra))
		}
		// A session that removed the whole folder cannot write this; both then fail alike.
		code, err := d.upload(upFile{name: u + "/Status.plist", data: statusPlist(t, "finished")})
		if err != nil {
			return fmt.Errorf("upload Status.plist: %w", err)
		}
		seen = append(seen, fmt.Sprintf("upload Status.plist → %d", code))
		return d.finish(0, "")
	})
	_, err := backupWith(t, c, BackupOptions{Root: root, DirectWrites: direct, FileMode: 0o444})
	if werr := wait(); werr != nil {
		t.Fatalf("device: %v", werr)
	}
	seen = append(seen, fmt.Sprintf("result: %v", err != nil))
	return append(seen, tree(t, root)...), redirected
}

// listing renders a ContentsOfDirectory answer without its dates.
func listing(v any) string {
	m, _ := v.(map[string]any)
	var out []string
	for name, e := range m {
		em, _ := e.(map[string]any)
		out = append(out, fmt.Sprintf("%s:%v:%v", name, em["DLFileType"], em["DLFileSize"]))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// tree lists every entry under root: path, kind, and a file's mode and contents.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if de.IsDir() {
			out = append(out, rel+"/ d")
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s f %04o %s", rel, fi.Mode().Perm(), b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func without(s []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(e string) bool { return e == drop })
}
