package mobilebackup2

import (
	"hash"
	"io/fs"
)

// contentHash is what HashUploads configures.
type contentHash struct {
	newHash func() hash.Hash
	landed  func(Landed)
}

// Landed is one file a backup put in its folder, as HashUploads reports it.
type Landed struct {
	// Name is the device path the file has now. An upload written straight to its final
	// name (BackupOptions.DirectWrites) reports that name, not the Snapshot/ name the
	// device sent it to.
	Name string
	// Info is the file's fstat, taken before the close and the rename (the inode, size
	// and mtime stay). Sum is its content hash. Both are only valid during the call (the
	// next upload reuses them), and both are nil for a file whose bytes were not hashed: a
	// copy (DLMessageCopyItem), or an upload whose fstat failed.
	Info fs.FileInfo
	Sum  []byte
}

// HashUploads makes the next backups hash every uploaded file while its bytes stream in:
// newHash makes the hash (once per backup: it is Reset between files), and landed receives
// every file that landed, uploads with their sums and copies without (what it is given is
// valid only during the call: see Landed). The caller (the snapshot store's content index)
// then needs no second read of what was written, and knows whether any file arrived
// unhashed. This package knows nothing about the index; nil turns hashing off.
func (c *Client) HashUploads(newHash func() hash.Hash, landed func(Landed)) {
	c.contentHash = contentHash{newHash: newHash, landed: landed}
}
