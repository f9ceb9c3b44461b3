package notify

import (
	"sync"

	"github.com/gen2brain/beeep"
)

// Beeep sends notifications with gen2brain/beeep: D-Bus org.freedesktop.Notifications on Linux
// (falling back to notify-send), osascript or terminal-notifier on macOS, toasts on Windows.
// beeep is fire-and-forget: no actions, no replacing an earlier notification.
type Beeep struct {
	icon []byte
	mu   sync.Mutex // beeep's Linux path builds a notifier on the shared bus per call; serialise
}

var setAppName sync.Once

// NewBeeep returns a notifier that shows icon (PNG bytes, may be nil) with every message.
// beeep.AppName is process-global and read on every call, so it is set once, here.
func NewBeeep(appName string, icon []byte) *Beeep {
	setAppName.Do(func() { beeep.AppName = appName })
	return &Beeep{icon: icon}
}

// Notify shows m. Urgent messages use beeep.Alert: critical urgency and a sound, because the
// passcode prompt expires within minutes.
func (b *Beeep) Notify(m Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var icon any = ""
	if len(b.icon) > 0 {
		icon = b.icon
	}
	if m.Urgent {
		return beeep.Alert(m.Title, m.Body, icon)
	}
	return beeep.Notify(m.Title, m.Body, icon)
}
