package mobilebackup2

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"strings"
)

// Uploads straight to their final names (BackupOptions.DirectWrites).
//
// A device uploads every file of a backup to <UDID>/Snapshot/xx/<id> and, once all are in,
// moves each to <UDID>/xx/<id> with DLMessageMoveItems (protocol.md §7.8; libimobiledevice
// #1135). On a first or full backup into the store's staging folder those moves were about a
// quarter of the host's CPU: one cross-directory renameat per file, each a lookup and a
// directory entry removed and added on both sides (perf, 200,000 × 2 KB on ext4: 27.8% of
// all samples in moveItems). So where the final name does not exist yet, the upload is
// created under it at once, and the later move of that file is answered without touching
// the disk.
//
// What the device sees must not change (TestRedirectIsInvisible plays random sessions both
// ways and compares every answer and the folder):
//   - The server keeps the set of redirected uploads whose move has not come yet (20 bytes
//     each, and only until their move: idset.go).
//   - Any other request that could see one (a download, a listing, a removal, a copy, a move
//     elsewhere, an upload over either name, a folder created below one) first puts the file
//     back where the device put it (one rename), then runs as it always did; so do the
//     remaining ones when the device reports success without having moved them.
//   - An upload is redirected only while nothing but redirects has ever been put under a
//     blob name in Snapshot/ (stagedUsed), so the name the device used is known to be free
//     and nothing it once held can outlive the move; and only if the device created the
//     Snapshot/ prefix folder the upload goes to, as the usual way needs.
//   - Only canonical blob names are redirected; Manifest.db, Status.plist and every other
//     name take the usual way.
//
// This is done only where the folder is thrown away unless the run succeeds (a crash
// midway may leave an upload under its final name, as DirectWrites already allows). It
// pays on a first or full backup, whose staging folder starts empty. In a clone (an
// incremental) a redirected upload first waits for its prefix folder (EntryReady, which
// the store answers by linking that folder at once), and the first upload of a changed
// file, whose final name exists, ends redirects: so an incremental waits at most a few
// times, and its new files are few anyway.

// blobIDLen is the size of a file ID (SHA-1 of domain-path) in bytes.
const blobIDLen = 20

type blobID [blobIDLen]byte

// snapshotDir is the device's staging folder inside <UDID>.
const snapshotDir = "/Snapshot/"

// redirectable reports whether device path name is a canonical upload into the device's
// staging folder, <udid>/Snapshot/xx/<40 lower-case hex> with xx the first two digits, and
// returns its ID. Nothing else is ever redirected.
func redirectable(udid, name string) (blobID, bool) {
	var id blobID
	rest, ok := strings.CutPrefix(name, udid)
	if !ok {
		return id, false
	}
	rest, ok = strings.CutPrefix(rest, snapshotDir)
	if !ok || len(rest) != 3+2*blobIDLen || rest[2] != '/' || rest[:2] != rest[3:5] {
		return id, false
	}
	h := rest[3:]
	for i := range id {
		hi, ok1 := lowerHex(h[2*i])
		lo, ok2 := lowerHex(h[2*i+1])
		if !ok1 || !ok2 {
			return id, false
		}
		id[i] = hi<<4 | lo
	}
	return id, true
}

// lowerHex is the value of lower-case hex digit c: the device's blob names are lower case,
// and an upper-case spelling is another name.
func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// finalName is where the device moves redirectable name: the same path without Snapshot/.
func finalName(udid, name string) string {
	return udid + "/" + name[len(udid)+len(snapshotDir):]
}

// movedInPlace reports whether src → dst is the move of a redirected upload to the name it
// already has.
func (s *server) movedInPlace(src, dst string) bool {
	if s.redirected.len() == 0 {
		return false
	}
	id, ok := redirectable(s.res.udid, src)
	if !ok {
		return false
	}
	u := s.res.udid
	if len(dst) != len(src)-len(snapshotDir)+1 || dst[:len(u)] != u || dst[len(u)] != '/' ||
		dst[len(u)+1:] != src[len(u)+len(snapshotDir):] {
		return false
	}
	return s.redirected.remove(id)
}

// redirectScope is which redirected uploads a request on a device path can see.
type redirectScope struct {
	staged bool // the path is in Snapshot/ (or is it)
	all    bool // the whole <UDID> or Snapshot folder
	prefix int  // one prefix folder xx (its first byte); -1 for none
	one    bool // one file: id
	id     blobID
}

// scopeOf says which redirected uploads a request on validated path p touches. Names are
// compared without regard to case, so a case-insensitive volume (macOS) cannot reach a
// redirected file under another spelling; on other volumes that only undoes a redirect
// that did not need undoing.
func scopeOf(udid, p string) redirectScope {
	sc := redirectScope{prefix: -1}
	rest, ok := strings.CutPrefix(p, udid)
	if !ok || rest != "" && rest[0] != '/' {
		return sc
	}
	if rest == "" {
		sc.all = true
		return sc
	}
	parts := strings.SplitN(rest[1:], "/", 4)
	if strings.EqualFold(parts[0], "Snapshot") {
		sc.staged = true
		if len(parts) == 1 {
			sc.all = true
			return sc
		}
		parts = parts[1:]
	}
	var b [1]byte
	if len(parts[0]) != 2 {
		return sc
	}
	if _, err := hex.Decode(b[:], []byte(parts[0])); err != nil {
		return sc
	}
	if len(parts) == 1 {
		sc.prefix = int(b[0])
		return sc
	}
	// A path at or below <prefix>/<id>: the file itself, or something the device thinks
	// may lie under a name a redirected file occupies.
	if len(parts[1]) != 2*blobIDLen || !strings.EqualFold(parts[1][:2], parts[0]) {
		return sc
	}
	if _, err := hex.Decode(sc.id[:], []byte(parts[1])); err != nil {
		return sc
	}
	sc.one = true
	return sc
}

// undoRedirects puts every redirected upload that a request on validated device path p
// could see back at the name the device gave it, so the request then sees exactly what it
// would have without the redirect. With fileOnly, only a redirected file at or above p
// counts: creating a folder that exists answers the same either way.
func (s *server) undoRedirects(p string, fileOnly bool) error {
	if s.redirected.len() == 0 {
		return nil
	}
	sc := scopeOf(s.res.udid, p)
	switch {
	case sc.one:
		if s.redirected.has(sc.id) {
			return s.undoRedirect(sc.id)
		}
	case fileOnly:
	case sc.all:
		return s.redirected.each(-1, s.undoRedirect)
	case sc.prefix >= 0:
		return s.redirected.each(sc.prefix, s.undoRedirect)
	}
	return nil
}

// noteStaged records that a request may put something under a blob name in Snapshot/ by
// another way than a redirect: a file written at or below p, or, with tree, anything moved
// or copied to p (a folder may hold blob names). From then on no upload is redirected.
func (s *server) noteStaged(p string, tree bool) {
	if s.stagedUsed || !s.direct {
		return
	}
	if sc := scopeOf(s.res.udid, p); sc.staged && (sc.one || tree) {
		s.stagedUsed = true
	}
}

// undoRedirect moves one redirected upload back to <UDID>/Snapshot/xx/<id>, where nothing
// is (see stagedUsed).
func (s *server) undoRedirect(id blobID) error {
	s.stagedUsed = true
	h := hex.EncodeToString(id[:])
	staged := s.res.udid + snapshotDir + h[:2] + "/" + h
	final := finalName(s.res.udid, staged)
	fd, fn, err := s.tree.parentOf(final, false)
	if err != nil {
		return err
	}
	sd, sn, err := s.tree.parentOf(staged, false)
	if err != nil {
		return err
	}
	if err := renameAt(fd, fn, sd, sn); err != nil {
		return s.tree.pathErr("rename", final, err)
	}
	s.redirected.remove(id)
	return nil
}

// createRedirected creates the file for an upload to redirectable name under its final
// name, with O_EXCL. ok is false when the upload must take the usual way: something else
// was put under a blob name in Snapshot/ before, the device did not create the Snapshot/
// prefix folder, or the final name exists (a file of the latest backup, or one this run
// wrote another way) or cannot be made. An earlier redirected upload of the same name is
// this run's own file and is replaced. err is a failure of EntryReady, which ends the run.
func (s *server) createRedirected(name string, id blobID) (f uploadFile, d dirHandle, final string, ok bool, err error) {
	if s.stagedUsed || s.redirected.sorts > manySorts || s.redirected.full() {
		return nil, noDir, "", false, nil
	}
	if _, _, err := s.tree.parentOf(name, false); err != nil {
		return nil, noDir, "", false, nil
	}
	final = finalName(s.res.udid, name)
	// In a clone, the prefix folder must be cloned before anything is written into it;
	// the store then links that one folder at once (store.Run.EntryReady).
	if err := s.settle(final); err != nil {
		return nil, noDir, "", false, err
	}
	d, base, err := s.tree.parentOf(final, false)
	if err != nil {
		return nil, noDir, "", false, nil
	}
	f, err = s.files.create(d, base, s.filePerm())
	if errors.Is(err, fs.ErrExist) && s.redirected.has(id) {
		// Uploaded again: the file under the final name is this run's own.
		if unlinkAt(d, base) != nil {
			return nil, noDir, "", false, nil
		}
		s.redirected.remove(id)
		f, err = s.files.create(d, base, s.filePerm())
	}
	if err != nil {
		return nil, noDir, "", false, nil
	}
	return f, d, final, true, nil
}
