// Package jobs is Snapback's engine room: the daily schedule (Decide, a pure function), the
// persistent run state, the run queue, the manager loop that reacts to devices, the clock and
// wake-ups, and the typed event bus the tray and notifications listen to.
//
// jobs does not talk to devices or disks itself. It defines the two interfaces it needs -
// Runner (performs one backup) and DeviceSource (reports attach/detach) - and the
// composition root implements them on top of the backup engine and the snapshot store.
//
// Time always comes from an injected clock (Config.Now and Config.Tick), so tests run weeks
// of schedule in milliseconds. The manager compares the wall clock on every tick because
// timers stop while a laptop sleeps.
package jobs
