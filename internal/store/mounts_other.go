//go:build !linux

package store

// fstabTargets: only Linux keeps removable disks in a static mount table; macOS removes
// /Volumes/<name> on eject and Windows drive letters vanish, so the parent-folder check in
// checkVolume covers them.
func fstabTargets(string) map[string]bool { return nil }

const defaultFstab = ""
