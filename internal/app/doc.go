// Package app is Snapback's composition root. App.Run is the long-running Snapback that
// `snapback daemon`, `snapback tray` and `snapback demo` run: single-instance lock, settings
// (loaded and watched), run state, the job manager with its device source (usbmuxd hotplug)
// and runner, notifications, wake-up from sleep and the tray's feed. Backups.Run is the one
// backup orchestration (device → store Begin → encryption setting → engine → Commit →
// retention) that the runner and `snapback backup` share, and Stores the one settings-aware
// way to a device's store. Store errors are classified here, once, as failure classes. It
// holds no policy of its own: scheduling is jobs', storage is store's, protocol is
// mobilebackup2's.
package app
