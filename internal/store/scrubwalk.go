package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Issue #16: the scrub and `verify --data` ran over a list of every stored file and the whole
// content index in two maps: O(files) memory, over 64 MB for a 1,000,000-file device on the
// day the scrub ran inside a backup process. They now stream:
//
//   - walkStored merges the folders of all snapshots and archives one directory at a time,
//     in path order (a file shared by hard link has the same name in every folder that holds
//     it, so one directory's listings find all its links): memory is one directory's union.
//   - bucketedIndex splits the content index once per scrub into 256 bucket files by the
//     entry's first path component ("ab" of "ab/ab12…"), and holds in memory only the
//     bucket of the folder being walked (1/256 of the index).
//
// The scrub's position is the path of the next file to read (scrubState.Next), so a daily
// slice goes on in path order where the previous one stopped.

// storedFolder is one snapshot's or archive's folder.
type storedFolder struct {
	id  string
	dir string
}

// walkStored calls fn for every stored file of folders once per distinct file (inode), in
// path order and, under one name (its versions in different snapshots), in inode order,
// starting at the file named from with inode fromIno or above ("" = the first). fn returns
// stop to end the walk early. A symlink in a backup is reported for each folder that has it
// (key zero).
func walkStored(ctx context.Context, folders []storedFolder, from string, fromIno uint64, fn func(r *blobRef) (stop bool, err error)) error {
	var cursor []string
	if from != "" {
		cursor = strings.Split(from, "/")
	}
	dirs := make([]string, len(folders))
	for i, f := range folders {
		dirs[i] = f.dir
	}
	_, err := walkStoredDir(ctx, folders, dirs, "", cursor, fromIno, fn)
	return err
}

// walkEnt is a directory entry as listWalkDir gives it: ino is 0 where the listing has none.
type walkEnt struct {
	name string
	ino  uint64
	kind walkKind
}

type walkKind uint8

const (
	walkUnknown walkKind = iota // lstat says
	walkFile
	walkDir
)

// nameRef is one distinct file under one name, with the folders that hold it.
type nameRef struct {
	ref     *blobRef
	folders []int
}

// walkStoredDir walks the directory rel of every folder i with dirs[i] != "" (its path there).
// cursor, when non-nil, is the rest of the start path below rel: entries before it are skipped.
func walkStoredDir(ctx context.Context, folders []storedFolder, dirs []string, rel string, cursor []string, fromIno uint64, fn func(r *blobRef) (bool, error)) (bool, error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	type occ struct {
		folder int
		e      walkEnt
	}
	byName := map[string][]occ{}
	for i, dir := range dirs {
		if dir == "" {
			continue
		}
		ents, err := listWalkDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && rel == "" {
				continue // a folder deleted meanwhile
			}
			return true, fmt.Errorf("list files of %s: %w", folders[i].id, err)
		}
		for _, e := range ents {
			if cursor != nil && e.name < cursor[0] {
				continue
			}
			byName[e.name] = append(byName[e.name], occ{i, e})
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		occs := byName[name]
		delete(byName, name)
		erel := path.Join(rel, name)
		onCursor := cursor != nil && name == cursor[0]
		// Files under this name, one per distinct inode, in inode order.
		var refs []*nameRef
		var sub []string
	occs:
		for _, o := range occs {
			p := filepath.Join(dirs[o.folder], name)
			if o.e.kind == walkFile && o.e.ino != 0 {
				for _, r := range refs {
					if r.ref.key.ino == o.e.ino && r.ref.key != (blobKey{}) {
						r.folders = append(r.folders, o.folder) // another link: no stat
						continue occs
					}
				}
			}
			var fi fs.FileInfo
			if o.e.kind != walkDir {
				var err error
				if fi, err = os.Lstat(p); err != nil {
					return true, fmt.Errorf("list files of %s: %w", folders[o.folder].id, err)
				}
			}
			switch {
			case o.e.kind == walkDir || fi.IsDir():
				if sub == nil {
					sub = make([]string, len(dirs))
				}
				sub[o.folder] = p
			case onCursor && len(cursor) > 1:
				// A file where the cursor names a folder: before the cursor.
			case fi.Mode()&fs.ModeSymlink != 0:
				refs = append(refs, &nameRef{ref: &blobRef{path: p, rel: erel}, folders: []int{o.folder}})
			case fi.Mode().IsRegular():
				k, ok := keyOf(fi)
				if !ok {
					continue
				}
				found := false
				for _, r := range refs {
					if r.ref.key.ino == k.ino && r.ref.key != (blobKey{}) {
						r.folders = append(r.folders, o.folder)
						found = true
						break
					}
				}
				if !found {
					refs = append(refs, &nameRef{ref: &blobRef{key: k, path: p, rel: erel}, folders: []int{o.folder}})
				}
			}
		}
		sort.SliceStable(refs, func(i, j int) bool { return refs[i].ref.key.ino < refs[j].ref.key.ino })
		for _, r := range refs {
			if onCursor && len(cursor) == 1 && r.ref.key.ino < fromIno {
				continue // read by the previous slice
			}
			for _, f := range r.folders {
				r.ref.inIDs = append(r.ref.inIDs, folders[f].id)
			}
			stop, err := fn(r.ref)
			if stop || err != nil {
				return true, err
			}
		}
		if sub != nil {
			var c []string
			if onCursor && len(cursor) > 1 {
				c = cursor[1:]
			}
			if stop, err := walkStoredDir(ctx, folders, sub, erel, c, fromIno, fn); stop || err != nil {
				return true, err
			}
		}
	}
	return false, nil
}

// refBefore says whether the file rel with inode ino comes before (at, atIno) in
// walkStored's order.
func refBefore(rel string, ino uint64, at string, atIno uint64) bool {
	if rel == at {
		return ino < atIno
	}
	return pathBefore(rel, at)
}

// pathBefore says whether a comes before b in walkStored's order (path components compared
// one by one).
func pathBefore(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

// bucketedIndex is the content index split by the first path component of its entries.
type bucketedIndex struct {
	dir     string // the bucket files; "" when the split failed and whole holds everything
	whole   *hashIndex
	loaded  int
	cur     *hashIndex
	entries int // lines read, stale ones included (see compactHashesAfterRead)
}

const indexBuckets = 256

// bucketOf is an entry's bucket: a blob folder "ab" is bucket 0xab, other names hash.
func bucketOf(rel string) int {
	first, _, ok := strings.Cut(rel, "/")
	if !ok {
		first = ""
	}
	if len(first) == 2 {
		if v, err := parseHexByte(first); err == nil {
			return int(v)
		}
	}
	h := fnv.New32a()
	h.Write([]byte(first))
	return int(h.Sum32() % indexBuckets)
}

func parseHexByte(s string) (byte, error) {
	var v byte
	for _, c := range []byte(s) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		default:
			return 0, errors.New("not hex")
		}
	}
	return v, nil
}

// splitHashes reads the content index at path once and writes its entries to bucket files
// in a new folder under tmpParent, keeping their order (a later line for the same inode still
// wins within its bucket). Where the split cannot be written (a full disk), it falls back to
// the whole index in memory, as before issue #16.
func splitHashes(path, tmpParent string, log func(msg string, args ...any)) (*bucketedIndex, error) {
	b := &bucketedIndex{loaded: -1}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		b.whole = newHashIndex()
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read content index: %w", err)
	}
	defer f.Close()
	// Leftovers of a scrub that was killed: nothing else uses them after an hour.
	if old, _ := filepath.Glob(filepath.Join(tmpParent, ".scrub-index-*")); len(old) > 0 {
		for _, o := range old {
			if fi, err := os.Stat(o); err == nil && time.Since(fi.ModTime()) > time.Hour {
				os.RemoveAll(o)
			}
		}
	}
	dir, err := os.MkdirTemp(tmpParent, ".scrub-index-")
	if err != nil {
		log("content index not split; reading it whole", "err", err)
		return readWhole(path)
	}
	b.dir = dir
	var files [indexBuckets]*os.File
	var ws [indexBuckets]*bufio.Writer
	closeAll := func() error {
		var errs []error
		for i := range files {
			if files[i] != nil {
				errs = append(errs, ws[i].Flush(), files[i].Close())
				files[i] = nil
			}
		}
		return errors.Join(errs...)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	err = func() error {
		for sc.Scan() {
			line := sc.Bytes()
			if first {
				first = false
				if string(line) != hashesHeader {
					return fmt.Errorf("content index %s: unknown format %q", path, line)
				}
				continue
			}
			fields := strings.SplitN(string(line), " ", 5)
			if len(fields) != 5 {
				continue
			}
			b.entries++
			n := bucketOf(fields[4])
			if files[n] == nil {
				fb, err := os.Create(filepath.Join(dir, fmt.Sprintf("%02x", n)))
				if err != nil {
					return err
				}
				files[n], ws[n] = fb, bufio.NewWriterSize(fb, 4<<10)
			}
			ws[n].Write(line)
			ws[n].WriteByte('\n')
		}
		return sc.Err()
	}()
	if cerr := closeAll(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(dir)
		if strings.Contains(err.Error(), "unknown format") {
			return nil, err
		}
		log("content index not split; reading it whole", "err", err)
		return readWhole(path)
	}
	return b, nil
}

func readWhole(path string) (*bucketedIndex, error) {
	idx, err := readHashes(path)
	if err != nil {
		return nil, err
	}
	return &bucketedIndex{whole: idx, entries: idx.lines, loaded: -1}, nil
}

// index returns the part of the content index that holds the entries of files under rel's
// first path component: a reflink clone finds its source's entry by path, and a hard link
// has the same path in every folder, so the other buckets cannot know a file of this one.
func (b *bucketedIndex) index(rel string) (*hashIndex, error) {
	if b.whole != nil {
		return b.whole, nil
	}
	n := bucketOf(rel)
	if n != b.loaded {
		b.cur = nil // let the previous bucket go before reading the next
		idx, err := readHashLines(filepath.Join(b.dir, fmt.Sprintf("%02x", n)), false)
		if err != nil {
			return nil, err
		}
		b.cur, b.loaded = idx, n
	}
	return b.cur, nil
}

// close removes the bucket files.
func (b *bucketedIndex) close() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
