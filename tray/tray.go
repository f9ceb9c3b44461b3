package tray

import (
	"errors"
	"strings"
	"sync"
	"time"

	"fyne.io/systray"

	"snapback/icons"
)

// firstStateWait bounds how long the tray waits for the first State before it shows a
// placeholder, so that hosts asking for the menu right away see real content in the usual case.
const firstStateWait = 2 * time.Second

// Tray binds Menu models to the process's system-tray icon. Create it with New and call Run
// from main; systray allows one tray per process.
type Tray struct {
	ctl    Controller
	states <-chan State

	quitOnce sync.Once
	done     chan struct{} // closed when the tray ends; stops every goroutine below
	wg       sync.WaitGroup

	mu      sync.Mutex
	shape   string                       // structural signature of the bound menu
	items   map[string]*systray.MenuItem // by Item.Key
	current map[string]Item              // by Item.Key: what each bound entry shows and does
	icon    iconKey
	tooltip string
	closed  bool // the loop is closing systray's bus connection: systray must not be called
	ended   bool // Run is waiting for the goroutines: onReady must not start any
	gone    bool // the desktop session's bus went away while the tray ran
}

// ErrSessionGone is Run's error when the tray ended because the desktop session's bus went
// away (logout, or the bus crashed): nothing can show the tray any more.
var ErrSessionGone = errors.New("the desktop session's D-Bus went away")

type iconKey struct {
	set   bool
	state int
}

// New returns a tray that shows every State received on states and sends clicks to ctl.
// When states is closed the tray quits, so the engine's lifetime bounds the tray's.
func New(ctl Controller, states <-chan State) *Tray {
	return &Tray{ctl: ctl, states: states, done: make(chan struct{}), items: map[string]*systray.MenuItem{}, current: map[string]Item{}}
}

// Run shows the tray and blocks until Quit is called, the Quit item is clicked or the state
// channel is closed. It must be called from the main goroutine (macOS needs the main thread),
// at most once per process. When Run returns, every goroutine the tray started has ended.
//
// It returns ErrSessionGone when the desktop session's bus went away, nil otherwise.
func (t *Tray) Run() error {
	runLoop(t)
	t.stop()
	t.mu.Lock()
	t.ended = true
	gone := t.gone
	t.mu.Unlock()
	t.wg.Wait()
	if gone {
		return ErrSessionGone
	}
	return nil
}

// close stops every later call into systray, once any under way has returned: Linux's loop
// calls it before it closes systray's bus connection, on which a late SetIcon would panic
// (systray sets the icon property with SetMust).
func (t *Tray) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

// republish sends the icon and tooltip already shown again. systray starts onReady
// before it exports the item's properties on Linux, and a SetIcon or SetTooltip that lands
// while the export is under way is dropped without an error (fyne-io/systray#35; netbird
// worked around the same, netbirdio/netbird#2993): the item would show no icon until the state
// next changed. Our own CI caught a tray that way. runLoop calls this once the export is done.
func (t *Tray) republish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if t.icon.set {
		setIcon(icons.State(t.icon.state))
	}
	if t.tooltip != "" {
		setTooltip(t.tooltip)
	}
}

// Quit ends Run. It is safe to call from any goroutine, more than once, e.g. on SIGTERM.
func (t *Tray) Quit() {
	t.stop()
	systray.Quit()
}

func (t *Tray) stop() { t.quitOnce.Do(func() { close(t.done) }) }

// onReady runs on systray's own goroutine once the tray exists. It counts itself among the
// goroutines Run waits for, unless Run is already waiting: systray may start it late, or (on
// Linux without a bus) while Run is ending.
func (t *Tray) onReady() {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	select {
	case s, ok := <-t.states:
		if !ok {
			go t.Quit()
			return
		}
		t.show(t.latest(s))
	case <-time.After(firstStateWait):
		t.show(State{Now: time.Now()})
	case <-t.done:
		return
	}
	t.wg.Add(1)
	go t.follow()
}

// follow shows each new State until the channel closes or the tray ends.
func (t *Tray) follow() {
	defer t.wg.Done()
	for {
		select {
		case s, ok := <-t.states:
			if !ok {
				t.Quit()
				return
			}
			t.show(t.latest(s))
		case <-t.done:
			return
		}
	}
}

// latest drains states already waiting, so a burst of progress updates costs one repaint.
func (t *Tray) latest(s State) State {
	for {
		select {
		case next, ok := <-t.states:
			if !ok {
				return s
			}
			s = next
		default:
			return s
		}
	}
}

func (t *Tray) show(s State) {
	t.apply(Build(s))
}

// apply binds m: it updates entries in place when the menu's structure is unchanged (the
// common case: progress and labels), otherwise it rebuilds the whole menu. Rebuilding on every
// progress tick would flicker open menus and, on Windows, leak GDI handles (fyne-io/fyne#3760).
func (t *Tray) apply(m Menu) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if k := (iconKey{set: true, state: int(m.Icon)}); k != t.icon {
		setIcon(m.Icon)
		t.icon = k
	}
	if m.Tooltip != t.tooltip {
		setTooltip(m.Tooltip)
		t.tooltip = m.Tooltip
	}
	if sh := shape(m.Items); sh != t.shape {
		t.rebuild(m.Items)
		t.shape = sh
		return
	}
	t.update(m.Items)
}

// shape is the menu's structure: keys, nesting, separators and checkboxes, not labels.
func shape(items []Item) string {
	var b strings.Builder
	var walk func([]Item)
	walk = func(items []Item) {
		for _, it := range items {
			b.WriteString(it.Key)
			switch {
			case it.Separator:
				b.WriteString("|-")
			case it.Checkable:
				b.WriteString("|x")
			}
			if len(it.Children) > 0 {
				b.WriteString("{")
				walk(it.Children)
				b.WriteString("}")
			}
			b.WriteString(";")
		}
	}
	walk(items)
	return b.String()
}

// rebuild replaces the whole menu. Removing items closes their click channels, which ends
// their click goroutines.
func (t *Tray) rebuild(items []Item) {
	systray.ResetMenu()
	clear(t.items)
	clear(t.current)
	var add func(parent *systray.MenuItem, items []Item)
	add = func(parent *systray.MenuItem, items []Item) {
		for _, it := range items {
			if it.Separator {
				if parent == nil {
					systray.AddSeparator()
				} else {
					parent.AddSeparator()
				}
				continue
			}
			var mi *systray.MenuItem
			switch {
			case parent == nil && it.Checkable:
				mi = systray.AddMenuItemCheckbox(it.Label, it.Tooltip, it.Checked)
			case parent == nil:
				mi = systray.AddMenuItem(it.Label, it.Tooltip)
			case it.Checkable:
				mi = parent.AddSubMenuItemCheckbox(it.Label, it.Tooltip, it.Checked)
			default:
				mi = parent.AddSubMenuItem(it.Label, it.Tooltip)
			}
			if it.Disabled {
				mi.Disable()
			}
			t.items[it.Key] = mi
			t.current[it.Key] = it
			if len(it.Children) > 0 {
				// libdbusmenu-gtk hosts (Xfce, GNOME's extension) may handle the parent's
				// children-display update after its children and then show the submenu empty;
				// a short pause after creating a parent keeps them in order (Tailscale does the
				// same). Seen with xfce4-panel 4.18 after a rebuild.
				time.Sleep(submenuPause)
				add(mi, it.Children)
				continue
			}
			t.wg.Add(1)
			go t.clicks(it.Key, mi.ClickedCh)
		}
	}
	add(nil, items)
}

// update changes labels, tooltips, enabled and checked states of the bound entries in place.
func (t *Tray) update(items []Item) {
	for _, it := range items {
		if it.Separator {
			continue
		}
		mi, old := t.items[it.Key], t.current[it.Key]
		if it.Label != old.Label {
			mi.SetTitle(it.Label)
		}
		if it.Tooltip != old.Tooltip {
			mi.SetTooltip(it.Tooltip)
		}
		if it.Disabled != old.Disabled {
			if it.Disabled {
				mi.Disable()
			} else {
				mi.Enable()
			}
		}
		if it.Checkable && it.Checked != mi.Checked() {
			if it.Checked {
				mi.Check()
			} else {
				mi.Uncheck()
			}
		}
		t.current[it.Key] = it
		t.update(it.Children)
	}
}

// clicks forwards one entry's clicks until the entry is removed or the tray ends. systray
// drops a click when nobody is receiving, so each entry has a receiver at all times.
func (t *Tray) clicks(key string, ch <-chan struct{}) {
	defer t.wg.Done()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
			t.click(key)
		case <-t.done:
			return
		}
	}
}

// click runs the action the entry has in the latest model, not the one it had when bound:
// "Back Up Now" and "Cancel Backup" share an entry.
func (t *Tray) click(key string) {
	t.mu.Lock()
	it, ok := t.current[key]
	t.mu.Unlock()
	if !ok || it.Disabled || it.Action.Verb == NoVerb {
		return
	}
	if it.Action.Do(t.ctl) {
		t.Quit()
	}
}
