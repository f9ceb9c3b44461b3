// Package offsite copies committed backups to a restic repository and brings them back,
// driving Debian's (or the user's) restic through its stable command-line interface rather
// than inventing remote storage: restic already deduplicates, encrypts, and speaks SFTP, REST,
// S3, B2, Azure, GCS, Swift and every rclone backend.
//
// One Snapback snapshot becomes one restic snapshot, tagged udid:<UDID>, device:<name> and
// snapback:<snapshot ID>, whose tree is /<UDID>/... (a standard Apple backup folder) whatever
// the location, uploaded from a hard-linked view of the snapshot (store.OpenView) so that a
// commit or retention run cannot change what restic reads. The device's previous restic
// snapshot is the parent, so unchanged files are not even read again, and deduplication makes
// each push cost the changed bytes. Restore verifies the folder like any backup before it is
// put in place.
//
// The repository password comes from the OS keychain and reaches restic on its stdin (see
// Restic). restic's failures are classified once, here, from its exit code and its own
// message, as failure errors carrying an *Error (Kind, restic's words, remedy).
package offsite
