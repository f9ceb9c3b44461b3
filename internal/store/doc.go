// Package store keeps Time-Machine-like snapshots of iOS backups on disk, in a layout that
// Finder, iTunes and idevicebackup2 accept, and that no crash, full disk or missing disk can
// corrupt.
//
// Layout (DESIGN.md §4), below a location folder (on a bare volume root:
// <volume>/Snapback.Backups/):
//
//	<UDID>/                               latest complete backup, Apple format
//	<UDID>-YYYYMMDD-HHMMSS/               archived backups (pinned; never deleted automatically)
//	Snapback.Versions/volume.json         identity of this destination
//	Snapback.Versions/<UDID>/snapshots/<id>/       earlier complete backups
//	Snapback.Versions/<UDID>/snapshots/<id>.json   snapshot record (the commit point)
//	Snapback.Versions/<UDID>/archives/<name>.json  archive records
//	Snapback.Versions/<UDID>/staging/<UDID>/       the run in progress
//	Snapback.Versions/<UDID>/next/<UDID>/          the next run's start, prepared ahead (next.go)
//	Snapback.Versions/<UDID>/journal.json, lock
//
// Every committed backup has a record in snapshots/. The newest record describes the latest
// backup, whose files live in <UDID>/; every older record's files live in snapshots/<id>/.
//
// # Why hard links are safe here
//
// A run's staging folder starts as a clone of the latest backup: hard links, else reflinks,
// else a full copy (probeClone says why hard links come first). With hard links the staging files share inodes
// with committed snapshots, which is safe only because nothing writes a file in place: the
// backup engine writes a new file and renames it over the old name, and this package marks
// committed files read-only as a second line of defence. Metadata is written with
// internal/atomicfile.
//
// # Commit
//
// Run.Commit verifies the staging backup, writes journal.json naming every step, then moves
// the old latest to snapshots/<id>/, the staging backup to <UDID>/, and writes the new snapshot
// record last: the record is the commit point. After a hard-link clone, verifying, measuring
// and indexing cost what the run changed, not the backup's size (delta.go): the changes are
// found from the two folders' directory listings, and sizes follow from the previous record. Every step is idempotent, so Recover (run by
// Open and Begin) finishes a journal that a crash interrupted; a run that never reached the
// journal is simply discarded.
//
// # Concurrency
//
// A Store is safe for use by several goroutines; per-device work is serialised by the device
// lock file, which also excludes other processes. Snapshots, Decisions and records returned by
// this package are copies owned by the caller.
package store
