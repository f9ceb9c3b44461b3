// Package diskspace tells how much space a user may still write on a filesystem: the one
// measure the store (before a backup) and the protocol (answering the device's free-space
// questions) both use, so that they never disagree about the same disk.
package diskspace
