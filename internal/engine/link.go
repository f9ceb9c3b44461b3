package engine

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"snapback/internal/device"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
)

// link is one prepared mobilebackup2 connection, the part every operation (backup, restore,
// ChangePassword) shares (protocol.md §11): a lockdown session, notification_proxy watched
// for the passcode prompt and the device's cancel, AFC for the sync lock, mobilebackup2
// started with the escrow bag and handshaken. The lockdown session is closed once the
// services run, as idevicebackup2 does.
type link struct {
	client *mobilebackup2.Client
	np     *device.Notifications
	afc    *device.AFC
	bconn  net.Conn
	log    *slog.Logger

	watchDone chan struct{}
	lock      *device.SyncLock
	unlocked  bool
}

// openLink opens the link to udid. before, if not nil, runs on the lockdown session first
// (to read values, or to refuse early); the session is closed when openLink returns.
// Device notifications become em events; a cancel tapped on the device cancels ctx through
// cancel. On error everything opened so far is closed.
func openLink(ctx context.Context, devs *device.Host, udid string, em *mobilebackup2.Emitter, cancel context.CancelCauseFunc,
	now func() time.Time, log *slog.Logger, before func(*device.Session) error) (_ *link, err error) {
	sess, err := devs.Open(ctx, udid) // a nil Host is the mux alone
	if err != nil {
		return nil, err
	}
	closeSess := sync.OnceFunc(func() { sess.Close() })
	defer closeSess()
	if before != nil {
		if err := before(sess); err != nil {
			return nil, err
		}
	}
	l := &link{log: log}
	defer func() {
		if err != nil {
			l.close(ctx)
		}
	}()
	if l.np, err = sess.StartNotifications(ctx); err != nil {
		return nil, err
	}
	// The watcher turns device notifications into events; it ends when np closes.
	l.watchDone = make(chan struct{})
	go func() {
		defer close(l.watchDone)
		for name := range l.np.C() {
			switch name {
			case device.NotifyPasscodeShown:
				em.PasscodeRequested()
			case device.NotifyPasscodeDismissed:
				em.PasscodeDismissed()
			case device.NotifySyncCancel:
				cancel(failure.New(failure.CancelledOnDevice, nil))
			default:
				log.Debug("device notification", "name", name)
			}
		}
	}()
	if err := l.np.Observe(observed...); err != nil {
		return nil, err
	}
	if l.afc, err = sess.StartAFC(ctx); err != nil {
		return nil, err
	}
	if l.bconn, err = sess.StartService(ctx, device.ServiceBackup, true); err != nil {
		return nil, err
	}
	closeSess()
	l.client = mobilebackup2.NewClient(l.bconn, now)
	if err := l.client.Handshake(ctx); err != nil {
		return nil, err
	}
	log.Debug("mobilebackup2 ready", "protocol", l.client.ProtocolVersion, "devicelink", l.client.DeviceVersion)
	return l, nil
}

// lockSync does the sync lock dance (protocol.md §8.2): it keeps iTunes, Finder and other
// hosts from syncing the device at the same time.
func (l *link) lockSync(ctx context.Context, attempts int, retry time.Duration) error {
	if attempts <= 0 {
		attempts = 50
	}
	if retry <= 0 {
		retry = 200 * time.Millisecond
	}
	if err := l.np.Post(device.NotifySyncWillStart); err != nil {
		return err
	}
	lock, err := l.afc.LockSync(ctx, attempts, device.SleepWait(retry), func() error {
		return l.np.Post(device.NotifySyncLockRequest)
	})
	if err != nil {
		return err
	}
	l.lock = lock
	return l.np.Post(device.NotifySyncDidStart)
}

// release unlocks the sync lock and posts syncDidFinish; then it says goodbye on the
// DeviceLink (protocol.md §11.10). Calling it again does nothing.
func (l *link) release(ctx context.Context) {
	if l.unlocked || l.client == nil {
		return
	}
	l.unlocked = true
	if l.lock != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout(ctx))
		defer ccancel()
		if err := l.lock.Unlock(cctx); err != nil {
			l.log.Debug("sync unlock", "err", err)
		}
		if err := l.np.Post(device.NotifySyncDidFinish); err != nil {
			l.log.Debug("post syncDidFinish", "err", err)
		}
	}
	if err := l.client.Disconnect(); err != nil {
		l.log.Debug("mobilebackup2 disconnect", "err", err)
	}
}

// close releases the lock if still held and closes every service, waiting for the
// notification watcher to end.
func (l *link) close(ctx context.Context) {
	l.release(ctx)
	if l.bconn != nil {
		l.bconn.Close()
	}
	if l.afc != nil {
		l.afc.Close()
	}
	if l.np != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout(ctx))
		defer ccancel()
		if err := l.np.Close(cctx); err != nil {
			l.log.Debug("notification_proxy close", "err", err)
		}
		<-l.watchDone
	}
}
