package store

import "syscall"

// openNoATime asks the kernel not to update a file's access time when it is read. The store
// links, chmods and renames files, each of which changes their ctime, so under relatime
// (the default mount option) the first read afterwards rewrites the inode: the daily scrub
// reading up to 1 GB of stored files made one inode write, and its journal traffic, per file
// read (issue #16), on a disk the store otherwise only reads at that moment.
const openNoATime = syscall.O_NOATIME
