package store

import (
	"fmt"
	"strings"
)

// FSIdentity says which filesystem a destination lives on. It is recorded at a location's
// first use (volume.json on the disk, and the host's list of known destinations) and compared
// before every write, so that an empty mount point or another disk mounted in the same place
// is never mistaken for the backup disk.
//
// Why these fields: the filesystem UUID (from the /dev/disk/by-uuid link whose device is the
// folder's st_dev) is what the user would call "the disk" and survives re-plugging and device
// renumbering, but udev is not everywhere (containers, some NAS). statfs f_fsid is derived
// from the UUID on ext2/3/4 and btrfs (the kernel XORs the two halves of s_uuid), so there it
// is as good as the UUID without udev; on other filesystems (xfs, vfat, exfat, tmpfs, NFS) it
// is the device number, which the kernel may hand to the next disk plugged in. The device
// number and the mount point from /proc/self/mountinfo are the last resort: both equal means
// the same mount, and mountinfo (not fstab) knows udisks, systemd and manual mounts alike.
type FSIdentity struct {
	UUID   string `json:"uuid,omitempty"`   // filesystem UUID, "" when the OS does not tell
	FSID   string `json:"fsid,omitempty"`   // statfs f_fsid
	Dev    string `json:"dev,omitempty"`    // major:minor of the filesystem's device
	Mount  string `json:"mount,omitempty"`  // mount point (mountinfo), "" if unknown
	Type   string `json:"type,omitempty"`   // filesystem type (ext4, vfat, ...)
	Source string `json:"source,omitempty"` // what is mounted (/dev/sdb1, /dev/loop0)
}

// stableFSID lists the filesystems whose statfs f_fsid is derived from their UUID, not from
// the device number (fs/ext4/super.c ext4_statfs, fs/btrfs/super.c btrfs_statfs).
var stableFSID = map[string]bool{"ext2": true, "ext3": true, "ext4": true, "btrfs": true}

func (id FSIdentity) String() string {
	var parts []string
	if id.UUID != "" {
		parts = append(parts, "UUID "+id.UUID)
	}
	if id.Type != "" {
		parts = append(parts, id.Type)
	}
	if id.Source != "" && id.Source != id.Type {
		parts = append(parts, id.Source)
	}
	if id.Dev != "" {
		parts = append(parts, "device "+id.Dev)
	}
	if id.Mount != "" {
		parts = append(parts, "mounted at "+id.Mount)
	}
	if len(parts) == 0 {
		parts = append(parts, "fsid "+id.FSID)
	}
	return strings.Join(parts, ", ")
}

func (id FSIdentity) zero() bool { return id == FSIdentity{} }

// sameFS decides whether cur is the filesystem recorded as rec, and says why. The strongest
// identity both sides have decides: UUID, then a UUID-derived fsid, then device and mount
// point together.
func sameFS(rec, cur FSIdentity) (bool, string) {
	switch {
	case rec.UUID != "" && cur.UUID != "":
		return rec.UUID == cur.UUID, fmt.Sprintf("filesystem UUID %s, now %s", rec.UUID, cur.UUID)
	case rec.FSID != "" && rec.Type == cur.Type && stableFSID[rec.Type]:
		return rec.FSID == cur.FSID, fmt.Sprintf("%s filesystem id %s, now %s", rec.Type, rec.FSID, cur.FSID)
	case rec.Mount != "" && cur.Mount != "":
		return rec.Dev == cur.Dev && rec.Mount == cur.Mount,
			fmt.Sprintf("device %s mounted at %s, now device %s mounted at %s", rec.Dev, rec.Mount, cur.Dev, cur.Mount)
	default:
		return rec.Dev == cur.Dev && rec.FSID == cur.FSID, fmt.Sprintf("device %s, now %s", rec.Dev, cur.Dev)
	}
}
