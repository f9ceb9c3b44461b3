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

// # For the tray and notifications
//
// The tray is a view of Status. Call Manager.Bus().Subscribe(AllEvents): the Subscription's
// Initial field is the state at that moment, and C then delivers every change. The simplest
// correct tray rebuilds its menu from Manager.Status() whenever an event arrives (Status is a
// cheap copy); notifications key off the event types (PasscodeRequested, RunFinished,
// RunFailed with Result ResultDiskMissing, Overdue, ApprovalNeeded, SettingsInvalid). A
// subscriber that falls more than its buffer behind loses events (Subscription.Dropped
// counts them) but never slows the engine; calling Status() again recovers the full picture.
//
// Commands go the other way: BackUpNow, Cancel, SetPaused and ClearApproval. They are safe
// from any goroutine and return once the manager loop has applied them.
