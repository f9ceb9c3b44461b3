//go:build !unix

package store

import "context"

// linkSubtree hard-links the folder src into dst (made if missing) through the portable walk.
func linkSubtree(ctx context.Context, src, dst string, hook func()) error {
	return walkClone(ctx, src, dst, CloneHardlink, hook)
}
