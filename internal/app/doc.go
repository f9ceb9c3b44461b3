// Package app joins the engine's parts for the commands in package main: it implements the
// job manager's Runner (one backup: device → mobilebackup2 → snapshot store → retention) and
// DeviceSource (usbmuxd hotplug), maps the manager's status onto the tray's model, and turns
// engine events into desktop notifications. It holds no policy of its own: scheduling is
// jobs', storage is store's, protocol is mobilebackup2's.
package app
