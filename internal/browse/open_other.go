//go:build !unix

package browse

import "os"

// openNoFollow: CopyFile refuses symlinks by Lstat first; Windows has no O_NOFOLLOW.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }
