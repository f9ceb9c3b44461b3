package mobilebackup2

import (
	"hash"
	"io/fs"
)

// contentHash is what HashUploads configures.
type contentHash struct {
	newHash func() hash.Hash
	hashed  func(fi fs.FileInfo, sum []byte)
}

// HashUploads makes the next backups hash every uploaded file while its bytes stream in:
// newHash makes the hash (once per backup: it is Reset between files), and hashed receives
// each file that landed, with its FileInfo taken before the rename (the inode, size and mtime
// stay) and the sum, which is only valid during the call. The caller
// (the snapshot store's content index) then needs no second read of what was written. This
// package knows nothing about the index; nil turns hashing off.
func (c *Client) HashUploads(newHash func() hash.Hash, hashed func(fi fs.FileInfo, sum []byte)) {
	c.contentHash = contentHash{newHash: newHash, hashed: hashed}
}
