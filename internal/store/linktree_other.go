//go:build !unix

package store

import "context"

// linkTree hard-links the tree src into dst through the portable walk.
func (s *Store) linkTree(ctx context.Context, src, dst string) error {
	return s.walkClone(ctx, src, dst, CloneHardlink)
}
