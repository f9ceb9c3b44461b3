//go:build !darwin && !windows

package tray

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"fyne.io/systray"
	"github.com/godbus/dbus/v5"

	"snapback/icons"
)

func setIcon(s icons.State) {
	defer func() {
		// systray sets the icon property with SetMust, which panics with the write's error
		// when the session bus has died and godbus has not yet noticed ("write unix:
		// broken pipe", seen when the bus was killed under a starting tray; once godbus
		// has closed the connection, sends succeed silently). keepRegistered sees the bus
		// go and ends the tray; until then an icon change must not take the process down.
		// systray's and godbus's locks are released by their defers as the panic unwinds.
		// No test reaches that window on purpose.
		if r := recover(); r != nil {
			if _, bug := r.(runtime.Error); bug {
				panic(r)
			}
			if _, ok := r.(error); !ok {
				panic(r)
			}
		}
	}()
	systray.SetIcon(icons.For(s, icons.Linux))
}

// setTooltip also sets nothing else: on Linux the SNI ToolTip property carries it.
func setTooltip(s string) { systray.SetTooltip(s) }

// submenuPause is slept after creating a submenu parent, before its children (see rebuild).
const submenuPause time.Duration = 10 * time.Millisecond

// watcherName is the bus name of the panel's side of the tray protocol.
const watcherName = "org.kde.StatusNotifierWatcher"

// runLoop runs systray's Linux loop itself rather than through systray.Run, whose loop is only
// start, wait, end:
//   - the title is set before start: systray reads it once, at the export, as the item's Id,
//     by which KDE remembers the item's settings (otherwise "systray_<pid>", a new item each
//     run);
//   - start returns once the item's properties are exported, so what onReady set while the
//     export was under way can be sent again (see Tray.republish);
//   - the tray keeps itself registered with the panel (keepRegistered);
//   - the tray is closed before end closes systray's bus connection.
func runLoop(t *Tray) {
	// The process's shared session connection, taken before start so that it is certainly
	// the one start takes up (dbus.SessionBus hands out one per process).
	bus, err := dbus.SessionBus()
	start, end := systray.RunWithExternalLoop(t.onReady, t.stop)
	// The title names the item for hosts that show it instead of a tooltip.
	systray.SetTitle("Snapback")
	start()
	if err != nil || !bus.Connected() {
		// start failed the same way (systray logs it), or the bus closed in between and start
		// made no connection or a new one; either way it ran onReady, so states are still
		// followed. end would panic on a missing connection, and a closed one needs no end.
		// CheckHost tells the user beforehand.
		<-t.done
		return
	}
	t.republish()
	ctx, cancel := context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.keepRegistered(ctx, bus)
	<-t.done
	cancel()
	t.close()
	end()
}

// keepRegistered registers the item with each panel (StatusNotifierWatcher) that appears
// until ctx ends: a panel started after the tray (autostart at login can win that race) or
// restarted. systray does this too, but its loop reads every signal of the session connection
// it shares with go-keyring and beeep, and stops at the first one that does not look like
// NameOwnerChanged (a Secret Service prompt's Completed, for one); after that the icon would
// not come back until Snapback restarted. This loop listens on its own connection, whose
// calls all end with ctx.
//
// It also ends the tray when systray's connection, bus, closes while ctx is alive: the
// session bus is gone (the desktop session ended, or its bus died), and every later call into
// systray would fail or panic.
func (t *Tray) keepRegistered(ctx context.Context, bus *dbus.Conn) {
	defer t.wg.Done()
	signals := t.watchPanels(ctx, bus) // nil (never ready) if the watch could not be set up
	for {
		select {
		case <-ctx.Done():
			return
		case <-bus.Context().Done():
			if ctx.Err() == nil {
				t.mu.Lock()
				t.closed, t.gone = true, true
				t.mu.Unlock()
				t.Quit()
			}
			return
		case sig, ok := <-signals:
			if !ok {
				signals = nil // the watch's connection closed; bus tells whether the session did
				continue
			}
			if sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(sig.Body) < 3 {
				continue
			}
			if owner, _ := sig.Body[2].(string); owner != "" {
				t.register(ctx, bus)
			}
		}
	}
}

// watchPanels subscribes, on a connection of its own that closes with ctx, to panels taking
// the watcher's name, and registers with one already there. It returns nil when the
// subscription fails: the tray then relies on systray's own attempts.
func (t *Tray) watchPanels(ctx context.Context, bus *dbus.Conn) <-chan *dbus.Signal {
	watch, err := privateSessionBus(ctx)
	if err != nil {
		return nil
	}
	if err := watch.AddMatchSignalContext(ctx, dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, watcherName)); err != nil {
		watch.Close()
		return nil
	}
	signals := make(chan *dbus.Signal, 8)
	watch.Signal(signals)
	// A panel that appeared between systray's own attempt and the subscription above would
	// otherwise go unnoticed: ask once, now that no later one can be missed.
	var has bool
	if err := watch.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, watcherName).Store(&has); err == nil && has {
		t.register(ctx, bus)
	}
	return signals
}

// register announces the item to the panel from systray's own connection, bus: the panel
// takes the caller's unique name as the item's address. Never from a connection made anew
// (dbus.SessionBus makes one when the old one is closed): its name exports no item.
func (t *Tray) register(ctx context.Context, bus *dbus.Conn) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed || !bus.Connected() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A panel that is gone again, or refuses, is not worth a log line: the next one that
	// appears is registered with in turn. systray registers too; panels take a repeat as a no-op.
	bus.Object(watcherName, "/StatusNotifierWatcher").CallWithContext(ctx, watcherName+".RegisterStatusNotifierItem", 0, "/StatusNotifierItem")
}

// privateSessionBus connects to the session bus without starting one: godbus's shared
// connection runs dbus-launch when no bus is known (ssh -X), which would leave a stray
// dbus-daemon behind and make the check below pass on a bus no panel will ever join. The
// connection is closed when ctx ends, which also ends a handshake the bus does not answer.
func privateSessionBus(ctx context.Context) (*dbus.Conn, error) {
	conn, err := dbus.SessionBusPrivateNoAutoStartup(dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	// A private connection must authenticate and say Hello before it can call anything.
	if err := conn.Auth(nil); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// checkHost asks the session bus, on a connection of its own, whether a StatusNotifierWatcher
// owns its name.
func checkHost() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := privateSessionBus(ctx)
	if err != nil {
		return "", fmt.Errorf("no D-Bus session bus to show the tray on: %w", err)
	}
	defer conn.Close()
	var has bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, watcherName).Store(&has); err != nil {
		// The bus is there; only the question failed. The tray may well show: say so and go on.
		return fmt.Sprintf("could not ask the session bus whether a system tray is running (%v); the icon may not show", err), nil
	}
	if !has {
		return "no system tray on this desktop yet (nothing owns " + watcherName + "; " +
			"GNOME needs the AppIndicator extension): backups and notifications go on, and the icon appears when a tray starts", nil
	}
	return "", nil
}
