package store

import (
	"bufio"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/zeebo/xxh3"

	"snapback/internal/atomicfile"
	"snapback/internal/offheap"
)

// The content index: Snapback.Versions/<UDID>/hashes holds an XXH3-128 hash of every file
// the store committed, so that `snapshots verify --data` and the daily scrub can tell a
// flipped bit from a good file long before a restore needs it.
//
// Why XXH3-128: this finds accidental damage (bad sectors, a flaky USB bridge, bit rot), not
// forgery, so a non-cryptographic hash with 128 bits (no accidental collision among billions
// of blobs) is enough, and github.com/zeebo/xxh3 (maintained, AVX2/AVX-512 assembly) hashes
// at more than 10 GB/s per core here against about 2 GB/s for crypto/sha256 with SHA-NI
// (BenchmarkContentHash prints both): re-reading a store is then limited by the disk, and
// hashing a backup costs a few percent of its CPU time.
//
// Why keyed by inode: snapshots share unchanged files by hard link, so one inode is one blob
// however many snapshots hold it; the key adds size and mtime so that a reused inode number
// never matches an old entry. Reflink clones (new inode, same content and mtime) find their
// source's entry by relative path, size and mtime instead.
const (
	hashesFile   = "hashes"
	hashesHeader = "snapback-hashes 1 xxh3-128"
)

type blobKey struct {
	ino   uint64
	size  int64
	mtime int64
}

type pathKey struct {
	rel   string
	size  int64
	mtime int64
}

type hashEntry struct {
	key blobKey
	sum xxh3.Uint128
	rel string
}

type hashIndex struct {
	byInode map[uint64]hashEntry
	byPath  map[pathKey]xxh3.Uint128
	lines   int // entries read, stale ones included: the file needs compacting when this far exceeds the live files
}

func (l layout) hashes(udid string) string { return filepath.Join(l.device(udid), hashesFile) }

func newHashIndex() *hashIndex {
	return &hashIndex{byInode: map[uint64]hashEntry{}, byPath: map[pathKey]xxh3.Uint128{}}
}

func (h *hashIndex) add(k blobKey, rel string, sum xxh3.Uint128) {
	h.byInode[k.ino] = hashEntry{key: k, sum: sum, rel: rel}
	h.byPath[pathKey{rel, k.size, k.mtime}] = sum
}

// lookupResult says what the index knows about a file.
type lookupResult int

const (
	unknown  lookupResult = iota // never indexed (or its inode number was reused)
	known                        // sum is its recorded hash
	modified                     // the same file (inode and path) changed size or mtime since it was indexed
)

func (h *hashIndex) lookup(k blobKey, rel string) (xxh3.Uint128, lookupResult) {
	if e, ok := h.byInode[k.ino]; ok {
		if e.key == k {
			return e.sum, known
		}
		if e.rel == rel {
			return e.sum, modified
		}
	}
	if sum, ok := h.byPath[pathKey{rel, k.size, k.mtime}]; ok {
		return sum, known
	}
	return xxh3.Uint128{}, unknown
}

func readHashes(path string) (*hashIndex, error) { return readHashLines(path, true) }

// readHashLines reads an index file, or with header false one of the scrub's bucket files
// (the same lines without the header line).
func readHashLines(path string, header bool) (*hashIndex, error) {
	h := newHashIndex()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read content index: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := header
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if line != hashesHeader {
				return nil, fmt.Errorf("content index %s: unknown format %q", path, line)
			}
			continue
		}
		// ino size mtime hash rel
		fields := strings.SplitN(line, " ", 5)
		if len(fields) != 5 {
			continue // a damaged line loses one entry, not the index
		}
		ino, e1 := strconv.ParseUint(fields[0], 10, 64)
		size, e2 := strconv.ParseInt(fields[1], 10, 64)
		mtime, e3 := strconv.ParseInt(fields[2], 10, 64)
		b, e4 := hex.DecodeString(fields[3])
		if errors.Join(e1, e2, e3, e4) != nil || len(b) != 16 {
			continue
		}
		h.add(blobKey{ino, size, mtime}, fields[4], xxh3.Uint128{Hi: beUint64(b[:8]), Lo: beUint64(b[8:])})
		h.lines++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read content index: %w", err)
	}
	return h, nil
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func (h *hashIndex) write(path string) error {
	keys := make([]uint64, 0, len(h.byInode))
	for k := range h.byInode {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 256<<10)
		fmt.Fprintln(bw, hashesHeader)
		for _, k := range keys {
			writeHashLine(bw, h.byInode[k])
		}
		return bw.Flush()
	})
}

// writeHashLine writes e as one line of the content index ("ino size mtime sum rel").
//
// The line is appended in w's own buffer: fmt.Fprintf and its boxed arguments were 4.5% of
// a 200,000-file full backup's user time.
func writeHashLine(w *bufio.Writer, e hashEntry) {
	sum := e.sum.Bytes()
	b := w.AvailableBuffer()
	b = strconv.AppendUint(b, e.key.ino, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.key.size, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.key.mtime, 10)
	b = append(b, ' ')
	b = hex.AppendEncode(b, sum[:])
	b = append(b, ' ')
	b = append(b, e.rel...)
	b = append(b, '\n')
	w.Write(b)
}

// errNoIndex says the content index is missing or not in a format this version writes: the
// commit then rebuilds it from the whole backup.
var errNoIndex = errors.New("content index missing or unreadable")

// appendHashes adds entries to the end of the content index and fsyncs it: a commit's index
// update costs what the run wrote, not a read and rewrite of the whole index. A later line
// for the same inode wins when the index is read. A crash can tear only the last line, which
// readHashes skips; the next append starts on a fresh line so that it loses nothing more.
func appendHashes(path string, entries []hashEntry) (err error) {
	return appendHashesFrom(path, func(emit func(hashEntry)) error {
		for _, e := range entries {
			emit(e)
		}
		return nil
	})
}

// appendHashesFrom is appendHashes for entries that gen produces one at a time (hashing
// files as it goes), so that they are never all in memory. If gen fails, what it emitted
// stays appended: entries of files that never get committed, which compaction drops.
func appendHashesFrom(path string, gen func(emit func(hashEntry)) error) (err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return errNoIndex
	}
	if err != nil {
		return fmt.Errorf("content index: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("content index: %w", cerr)
		}
	}()
	head := make([]byte, len(hashesHeader)+1)
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != hashesHeader+"\n" {
		return errNoIndex
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("content index: %w", err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	var last [1]byte
	if _, err := f.ReadAt(last[:], fi.Size()-1); err != nil {
		return fmt.Errorf("content index: %w", err)
	}
	if last[0] != '\n' {
		bw.WriteByte('\n') // end the torn line a crash left
	}
	if err := gen(func(e hashEntry) { writeHashLine(bw, e) }); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("content index: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("content index: %w", err)
	}
	return nil
}

// indexMark is the content index's length before a commit appends to it, so that the lines of
// a backup that verification then refuses can be taken back: each refused attempt of a
// million-file full backup would otherwise leave 110 MB of lines that only compaction drops,
// and that every full read of the index loads meanwhile.
type indexMark struct {
	path string
	size int64 // -1: there was no index
}

func markIndex(path string) indexMark {
	fi, err := os.Stat(path)
	if err != nil {
		return indexMark{path: path, size: -1}
	}
	return indexMark{path: path, size: fi.Size()}
}

// rollback truncates the index to its marked length, or removes it when the commit created it
// (there was none, or only an unreadable one; the next commit creates it again). A crash
// before this leaves the lines, which is harmless: no committed file matches them.
func (m indexMark) rollback(created bool) error {
	if created || m.size < 0 {
		return removeFile(m.path)
	}
	f, err := os.OpenFile(m.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(m.size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// hashLineBytes bounds an index line from below ("ino size mtime 32-hex xx/40-hex-fileID"
// is over 100 bytes): size/hashLineBytes over-estimates the lines in the file.
const hashLineBytes = 100

// compactHashes rewrites the content index with only the entries of files that dirs still
// hold, atomically. Entries go stale when snapshots are deleted; appends never drop them, so
// the scrub (which counts live files anyway) and the commit (by a cheap size bound) call this
// when stale entries dominate. The caller holds the device lock, so no commit appends
// meanwhile.
//
// It streams (issue #16): the folders are walked one directory at a time and each file is
// looked up in one bucket of the split index (see walkStored, splitHashes), so memory does
// not grow with the number of files. The entries come out in path order.
func (s *Store) compactHashes(ctx context.Context, udid string, dirs []string) error {
	path := s.l.hashes(udid)
	bi, err := splitHashes(path, s.l.device(udid), func(msg string, args ...any) {
		s.log.Warn(msg, append([]any{"udid", udid}, args...)...)
	})
	if err != nil {
		return err
	}
	defer bi.close()
	folders := make([]storedFolder, len(dirs))
	for i, d := range dirs {
		folders[i] = storedFolder{id: d, dir: d}
	}
	live := 0
	err = atomicfile.Write(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 256<<10)
		fmt.Fprintln(bw, hashesHeader)
		err := walkStored(ctx, folders, "", 0, func(r *blobRef) (bool, error) {
			if r.key == (blobKey{}) {
				return false, nil // a symlink: never indexed
			}
			idx, err := bi.index(r.rel)
			if err != nil {
				return true, err
			}
			if e, ok := idx.byInode[r.key.ino]; ok && e.key == r.key {
				writeHashLine(bw, e)
				live++
			}
			return false, nil
		})
		if err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("compact content index: %w", err)
	}
	s.log.Info("content index compacted", "udid", udid, "entries", bi.entries, "live", live)
	return nil
}

// hashFile hashes a committed file without following a symlink in its place.
func hashFile(path string, buf []byte) (xxh3.Uint128, int64, error) {
	f, err := openNoFollow(path)
	if err != nil {
		return xxh3.Uint128{}, 0, err
	}
	defer f.Close()
	h := xxh3.New()
	// Read into buf by hand: io.CopyBuffer ignores buf when the source is an *os.File
	// (os.File.WriteTo falls back to io.Copy with a new 32 KB buffer), which made every file
	// hashed one large allocation for the collector to clear and sweep (7% of a scrub's
	// user time, issue #16).
	var n int64
	for {
		m, err := f.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if err == io.EOF {
			return h.Sum128(), n, nil
		}
		if err != nil {
			return xxh3.Uint128{}, n, err
		}
	}
}

func keyOf(fi fs.FileInfo) (blobKey, bool) {
	ino, _, ok := inodeOf(fi)
	return blobKey{ino: ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}, ok
}

// indexNewFiles hashes every file of dir that the index does not know yet (what this run
// wrote; files shared with the previous backup are known) and saves the index. It returns
// the number of files and bytes hashed.
func (s *Store) indexNewFiles(ctx context.Context, udid, dir string, streamed sumTable) (int, int64, error) {
	idx, err := readHashes(s.l.hashes(udid))
	if err != nil {
		// An unreadable index is rebuilt from what is on disk now; say so once.
		s.log.Warn("content index unreadable; rebuilding it", "udid", udid, "err", err)
		idx = newHashIndex()
	}
	buf := make([]byte, 1<<20)
	files, bytes := 0, int64(0)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		k, ok := keyOf(fi)
		if !ok {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if sum, ok := streamed.lookup(k); ok {
			idx.add(k, rel, sum) // hashed while it streamed in: no second read
			return nil
		}
		if sum, res := idx.lookup(k, rel); res == known {
			if e := idx.byInode[k.ino]; e.key != k {
				idx.add(k, rel, sum) // a reflink clone of an indexed file
			}
			return nil
		}
		if files++; files%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		sum, n, err := hashFile(path, buf)
		if err != nil {
			return err
		}
		bytes += n
		idx.add(k, rel, sum)
		return nil
	})
	if err != nil {
		return files, bytes, fmt.Errorf("index content of %s: %w", dir, err)
	}
	return files, bytes, idx.write(s.l.hashes(udid))
}

// hash128 is XXH3-128 as a hash.Hash (Sum appends the 16-byte big-endian sum).
type hash128 struct{ *xxh3.Hasher }

func (h hash128) Size() int { return 16 }
func (h hash128) Sum(b []byte) []byte {
	s := h.Sum128().Bytes()
	return append(b, s[:]...)
}

// streamedHashes collects the sums the engine computed while files streamed in, until the
// commit. A full backup keeps one per file until then, so they sit in one array of 48-byte
// entries without pointers (issue #16: a map of the same entries cost about 60 bytes each and
// briefly twice that while it grew, on top of being scanned by every garbage collection),
// outside the Go heap (internal/offheap): on the heap, the collector's growth target and
// append's doubling made the 40 MB of a million files (48 MB since entries carry their blob
// name, sumTable.landed) cost about twice that in RSS.
//
// The run frees the array when it ends (free): once its commit wrote the journal, or at
// Abort. Not before: a commit the verify refused may be retried.
type streamedHashes struct {
	mu    sync.Mutex
	mem   offheap.Mem
	sums  []sumEntry
	freed bool // add does nothing any more
	// unhashed is set once a file landed whose bytes were not hashed (a copy): from then on
	// the table vouches for no file's stat (see sumTable.landed).
	unhashed bool
}

// maxStreamed is the room reserved for streamed sums (192 MB of address space, pages only as
// written). Real devices hold up to about 1.3 million files; beyond this, append moves the
// sums to the Go heap, which costs memory, nothing else.
const maxStreamed = 4 << 20

type sumEntry struct {
	key blobKey
	sum xxh3.Uint128
	// blob is the idKey of the blob name the upload landed under, when it landed there
	// read-only with one link; 0 otherwise. See sumTable.landed.
	blob uint64
}

func (h *streamedHashes) add(e sumEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.freed {
		return
	}
	if h.sums == nil {
		h.sums = offheap.Alloc[sumEntry](&h.mem, maxStreamed)
	}
	h.sums = append(h.sums, e)
}

// landedUnhashed records that a file landed whose bytes were not hashed.
func (h *streamedHashes) landedUnhashed() {
	h.mu.Lock()
	h.unhashed = true
	h.mu.Unlock()
}

// free releases the sums; no table of them may be used afterwards, and later sums are
// dropped (the commit reads what it does not find).
func (h *streamedHashes) free() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sums, h.freed = nil, true
	h.mem.Free()
}

// table returns the sums sorted for lookups, for the commit; the engine is done by then. They
// stay for a later commit of the same run (one refused by verification may be retried).
func (h *streamedHashes) table() sumTable {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := newSumTable(h.sums)
	h.sums = t.e
	t.vouch = !h.unhashed
	return t
}

// sumTable is the streamed sums sorted by key, one entry per key. A key hashed twice with
// two different sums (a file rewritten within one mtime tick) has no sum: lookup misses, so
// the commit reads the file and the index holds what is on disk whichever write came last.
// Its entry stays, marked noSum, so that landed still sees its inode. (A stable sort to keep
// the later sum took 2-3x as long at a million files.)
//
// The commit looks up every file it lists, in directory order, which is no order of inode
// numbers: a binary search of the whole table (8 MB at 200,000 files) took a cache miss at
// most of its 18 steps and was 4.5% of a 200,000-file full backup's user time. starts cuts
// the inode range into about one bucket per 4 entries (inodes are numbers the filesystem
// hands out, dense within its groups), so a lookup searches a few neighbouring entries.
type sumTable struct {
	e      []sumEntry
	min    uint64   // e[0]'s inode
	shift  uint     // bucket b holds the inodes min + b<<shift up to the next bucket's
	starts []uint32 // starts[b] is the index of bucket b's first entry; nil: search all of e
	vouch  bool     // every file that landed was hashed: landed may answer
}

// noSum marks the entry of a key streamed with two different sums. Dropping it instead let
// landed vouch for an older upload of the same inode (review of issue #16's change: upload
// 100 bytes, then 200 bytes twice within one mtime tick, all on one reused inode, left the
// 100-byte entry alone). A real blob whose idKey is noSum is merely read and stat'ed again.
const noSum = ^uint64(0)

func compareBlobKeys(a, b blobKey) int {
	return cmp.Or(cmp.Compare(a.ino, b.ino), cmp.Compare(a.size, b.size), cmp.Compare(a.mtime, b.mtime))
}

func newSumTable(e []sumEntry) sumTable {
	slices.SortFunc(e, func(a, b sumEntry) int { return compareBlobKeys(a.key, b.key) })
	out := e[:0]
	for i := 0; i < len(e); {
		j, same, blob := i+1, true, e[i].blob
		for ; j < len(e) && e[j].key == e[i].key; j++ {
			same = same && e[j].sum == e[i].sum
			if e[j].blob != blob {
				blob = 0 // two names: landed vouches for neither
			}
		}
		if !same {
			blob = noSum
		}
		out = append(out, sumEntry{e[i].key, e[i].sum, blob})
		i = j
	}
	t := sumTable{e: out}
	if len(out) < 64 {
		return t
	}
	t.min = out[0].key.ino
	span, want := out[len(out)-1].key.ino-t.min, uint64(len(out)/4)
	for span>>t.shift >= want {
		t.shift++
	}
	t.starts = make([]uint32, span>>t.shift+2)
	j := 0
	for b := range t.starts {
		for j < len(out) && (out[j].key.ino-t.min)>>t.shift < uint64(b) {
			j++
		}
		t.starts[b] = uint32(j)
	}
	return t
}

// lookup returns the streamed sum of k, if there is one.
func (t sumTable) lookup(k blobKey) (xxh3.Uint128, bool) {
	lo, end := t.search(k)
	if lo < end && t.e[lo].key == k && t.e[lo].blob != noSum {
		return t.e[lo].sum, true
	}
	return xxh3.Uint128{}, false
}

// search returns the index of the first entry not below k, and the end of k's bucket.
func (t sumTable) search(k blobKey) (i, end int) {
	lo, hi := 0, len(t.e)
	if t.starts != nil {
		if k.ino < t.min {
			return 0, 0
		}
		b := (k.ino - t.min) >> t.shift
		if b >= uint64(len(t.starts)-1) {
			return 0, 0
		}
		lo, hi = int(t.starts[b]), int(t.starts[b+1])
	}
	end = hi
	for lo < hi { // written out: BinarySearchFunc's comparison through a function value cost more
		m := int(uint(lo+hi) >> 1)
		if blobKeyLess(t.e[m].key, k) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, end
}

// landed returns the entry (key: inode, size, mtime; and the streamed sum) of the file with
// inode ino found under the blob name whose idKey is blob, when the table vouches for it, so
// that a full commit need neither stat it nor look its sum up again (issue #16: the stat by
// name was 7% of a 200,000-file full backup's CPU, the fstat the upload already took less
// than half that). The sum is the streamed one: an entry whose uploads streamed different
// sums has blob noSum and is never vouched for. It vouches when
//   - this run uploaded exactly one file with that inode (an inode freed by a re-upload and
//     given to another upload appears twice: ask the filesystem),
//   - under that very blob name, where the upload landed read-only with one link,
//   - and no file landed in the run without a hash (vouch).
//
// That is enough: the name holds that inode now, and an inode is not reused while a name
// holds it; only this run's uploads and copies create files in a full backup's staging
// folder (the engine's own files are not blob names), so an inode this table lists for
// another, since-removed upload could only have been given to a copy, which ends vouching;
// a moved upload is under another name and gets its stat as before. The size and mtime are
// the fstat taken after the last byte was written; nothing writes the file after its close.
func (t sumTable) landed(ino, blob uint64) (sumEntry, bool) {
	if !t.vouch || blob == 0 || blob == noSum {
		return sumEntry{}, false
	}
	i, end := t.search(blobKey{ino: ino, size: math.MinInt64, mtime: math.MinInt64})
	if i >= end || t.e[i].key.ino != ino || t.e[i].blob != blob || (i+1 < end && t.e[i+1].key.ino == ino) {
		return sumEntry{}, false
	}
	return t.e[i], true
}

// blobKeyLess orders blob keys as compareBlobKeys does.
func blobKeyLess(a, b blobKey) bool {
	if a.ino != b.ino {
		return a.ino < b.ino
	}
	if a.size != b.size {
		return a.size < b.size
	}
	return a.mtime < b.mtime
}

// ContentHash returns the hash and the receiver for engine.Request.ContentHash and
// ContentHashed: every file the device uploads is hashed as its bytes stream in, and the
// commit indexes those files without reading them again. Files it does not hear about are
// read and hashed at commit as before, so passing them is an optimisation, never required.
//
// The receiver takes the device path each file landed under (<UDID>/xx/<id> for a blob),
// its FileInfo and its sum; a file that landed unhashed (fi nil) is reported too.
func (r *Run) ContentHash() (func() hash.Hash, func(name string, fi fs.FileInfo, sum []byte)) {
	return func() hash.Hash { return hash128{xxh3.New()} }, func(name string, fi fs.FileInfo, sum []byte) {
		if fi == nil || len(sum) != 16 {
			r.streamed.landedUnhashed()
			return
		}
		k, ok := keyOf(fi)
		if !ok {
			r.streamed.landedUnhashed()
			return
		}
		r.streamed.add(sumEntry{k, xxh3.Uint128{Hi: beUint64(sum[:8]), Lo: beUint64(sum[8:])}, landedBlob(r.udid, name, fi)})
	}
}

// landedBlob is the idKey of the blob name a file landed under, if the name is one
// (<udid>/xx/<id>) and the file is read-only with one link; else 0.
func landedBlob(udid, name string, fi fs.FileInfo) uint64 {
	if len(name) <= len(udid) || name[:len(udid)] != udid || name[len(udid)] != '/' {
		return 0
	}
	id, ok := blobFileID(name[len(udid)+1:])
	if _, nlink, _ := inodeOf(fi); !ok || nlink != 1 || fi.Mode().Perm()&0o222 != 0 {
		return 0
	}
	return idKey(id)
}
