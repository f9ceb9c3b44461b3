//go:build !unix

package store

import "context"

// linkTree hard-links the tree src into dst through the portable walk.
func (s *Store) linkTree(ctx context.Context, src, dst string) error {
	return walkClone(ctx, src, dst, CloneHardlink, func() { s.hook("clone") })
}

// linkSubtree hard-links the folder src into dst (made if missing) through the portable walk.
func linkSubtree(ctx context.Context, src, dst string, hook func()) error {
	return walkClone(ctx, src, dst, CloneHardlink, hook)
}
