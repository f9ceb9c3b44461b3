//go:build linux

package traytest

import (
	"bytes"
	"fmt"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"snapback/icons"
	"snapback/internal/testenv"
)

// Node is one com.canonical.dbusmenu layout entry as a host sees it.
type Node struct {
	ID       int32
	Props    map[string]dbus.Variant
	Children []Node
}

// Label is the entry's "label" property.
func (n Node) Label() string {
	s, _ := n.Props["label"].Value().(string)
	return s
}

// Enabled is the entry's "enabled" property; dbusmenu's default when absent is true.
func (n Node) Enabled() bool {
	v, ok := n.Props["enabled"]
	if !ok {
		return true
	}
	en, _ := v.Value().(bool)
	return en
}

// Find returns the direct child with the given label.
func (n Node) Find(label string) (Node, bool) {
	for _, c := range n.Children {
		if c.Label() == label {
			return c, true
		}
	}
	return Node{}, false
}

// Labels are the non-empty labels of the direct children, in order.
func (n Node) Labels() []string {
	var ls []string
	for _, c := range n.Children {
		if l := c.Label(); l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// Dump renders the subtree below n, one entry a line, for failure messages.
func (n Node) Dump(indent string) string {
	var b strings.Builder
	for _, c := range n.Children {
		if t, _ := c.Props["type"].Value().(string); t == "separator" {
			b.WriteString(indent + "----\n")
			continue
		}
		en, _ := c.Props["enabled"].Value().(bool)
		fmt.Fprintf(&b, "%s[%d] %q enabled=%v\n", indent, c.ID, c.Label(), en)
		b.WriteString(c.Dump(indent + "  "))
	}
	return b.String()
}

func toNode(v any) Node {
	f := v.([]any)
	n := Node{ID: f[0].(int32), Props: f[1].(map[string]dbus.Variant)}
	for _, c := range f[2].([]dbus.Variant) {
		n.Children = append(n.Children, toNode(c.Value()))
	}
	return n
}

// Host talks to a tray the way a panel does: through the StatusNotifierItem properties and
// com.canonical.dbusmenu. Every wait fails the test after Timeout.
type Host struct {
	T       *testing.T
	Conn    *dbus.Conn     // the host's own session-bus connection
	SNI     dbus.BusObject // the item's /StatusNotifierItem
	Menu    dbus.BusObject // the item's menu, from its Menu property
	Timeout time.Duration  // for the Wait methods; 10 s when zero
}

// NewHost connects to the session bus as a panel and binds to the item that registered as
// reg. The connection is closed when the test ends.
func NewHost(t *testing.T, reg Registration) *Host {
	t.Helper()
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	path := dbus.ObjectPath(reg.Service)
	if !path.IsValid() || !strings.HasPrefix(reg.Service, "/") {
		path = "/StatusNotifierItem"
	}
	sni := conn.Object(reg.Sender, path)
	menuPath, err := sni.GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatalf("Menu property: %v", err)
	}
	return &Host{T: t, Conn: conn, SNI: sni, Menu: conn.Object(reg.Sender, menuPath.Value().(dbus.ObjectPath))}
}

func (h *Host) timeout() time.Duration {
	if h.Timeout > 0 {
		return h.Timeout
	}
	return 10 * time.Second
}

// Layout is the whole menu (GetLayout from the root, all levels) and its revision.
func (h *Host) Layout() (uint32, Node) {
	h.T.Helper()
	var rev uint32
	var raw struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	if err := h.Menu.Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&rev, &raw); err != nil {
		h.T.Fatalf("GetLayout: %v", err)
	}
	return rev, toNode([]any{raw.ID, raw.Props, raw.Children})
}

// WaitFor polls GetLayout until path (labels from the root) exists and check (if not nil)
// accepts the entry, and returns it. Hosts poll too, and fyne answers the first GetLayout
// after a reset with depth 1.
func (h *Host) WaitFor(path []string, check func(Node) bool) Node {
	h.T.Helper()
	var root, found Node
	if !testenv.Eventually(h.timeout(), func() bool {
		_, root = h.Layout()
		n, ok := root, true
		for _, l := range path {
			if n, ok = n.Find(l); !ok {
				break
			}
		}
		found = n
		return ok && (check == nil || check(n))
	}) {
		h.T.Fatalf("menu never showed %q; menu is:\n%s", path, root.Dump(""))
	}
	return found
}

// Click sends the entry a "clicked" event, as a panel does when the user picks it.
func (h *Host) Click(n Node) {
	h.T.Helper()
	if err := h.Menu.Call("com.canonical.dbusmenu.Event", 0, n.ID, "clicked", dbus.MakeVariant(int32(0)), uint32(0)).Err; err != nil {
		h.T.Fatalf("Event(%d, clicked): %v", n.ID, err)
	}
}

// Tooltip is the title of the item's ToolTip property.
func (h *Host) Tooltip() string {
	h.T.Helper()
	v, err := h.SNI.GetProperty("org.kde.StatusNotifierItem.ToolTip")
	if err != nil {
		h.T.Fatalf("ToolTip: %v", err)
	}
	var tt struct {
		Name  string
		Icons []struct {
			W, H int32
			Pix  []byte
		}
		Title, Description string
	}
	if err := dbus.Store([]any{v.Value()}, &tt); err != nil {
		h.T.Fatalf("ToolTip %v: %v", v, err)
	}
	return tt.Title
}

// Pixmap is one SNI icon pixmap: ARGB32 in network byte order.
type Pixmap struct {
	W, H int32
	Pix  []byte
}

// Icon is the item's IconPixmap property (the tray sets exactly one size).
func (h *Host) Icon() Pixmap {
	h.T.Helper()
	v, err := h.SNI.GetProperty("org.kde.StatusNotifierItem.IconPixmap")
	if err != nil {
		h.T.Fatalf("IconPixmap: %v", err)
	}
	var px []Pixmap
	if err := dbus.Store([]any{v.Value()}, &px); err != nil || len(px) != 1 {
		h.T.Fatalf("IconPixmap %v: %v", v, err)
	}
	return px[0]
}

// ARGB is the SNI pixmap a host should receive for a Linux tray icon.
func ARGB(t *testing.T, s icons.State) Pixmap {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(icons.For(s, icons.Linux)))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	px := Pixmap{W: int32(b.Dx()), H: int32(b.Dy())}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			px.Pix = append(px.Pix, byte(a>>8), byte(r>>8), byte(g>>8), byte(bl>>8))
		}
	}
	return px
}

// SameIcon compares pixmaps on what every correct conversion agrees on: size, every alpha
// byte and the colour of opaque pixels. (fyne v1.12.2 takes the low byte of premultiplied
// 16-bit colour, so semi-transparent edge pixels differ slightly from an exact conversion.)
func SameIcon(got, want Pixmap) bool {
	if got.W != want.W || got.H != want.H || len(got.Pix) != len(want.Pix) {
		return false
	}
	for i := 0; i < len(want.Pix); i += 4 {
		if got.Pix[i] != want.Pix[i] {
			return false
		}
		if want.Pix[i] == 0xff && !bytes.Equal(got.Pix[i:i+4], want.Pix[i:i+4]) {
			return false
		}
	}
	return true
}

// IconIs tells whether the item currently shows the icon for s.
func (h *Host) IconIs(s icons.State) bool {
	h.T.Helper()
	return SameIcon(h.Icon(), ARGB(h.T, s))
}

// WaitIcon waits until the item shows the icon for s.
func (h *Host) WaitIcon(s icons.State) {
	h.T.Helper()
	want := ARGB(h.T, s)
	var got Pixmap
	if !testenv.Eventually(h.timeout(), func() bool { got = h.Icon(); return SameIcon(got, want) }) {
		h.T.Fatalf("IconPixmap is %dx%d, not the %v icon", got.W, got.H, s)
	}
}

// WaitTooltip waits until the tooltip's title is want.
func (h *Host) WaitTooltip(want string) {
	h.T.Helper()
	h.WaitTooltipFunc(want, func(s string) bool { return s == want })
}

// WaitTooltipFunc waits until check accepts the tooltip's title and returns it; what names
// the expectation in the failure message.
func (h *Host) WaitTooltipFunc(what string, check func(string) bool) string {
	h.T.Helper()
	var got string
	if !testenv.Eventually(h.timeout(), func() bool { got = h.Tooltip(); return check(got) }) {
		h.T.Fatalf("ToolTip = %q, want %s", got, what)
	}
	return got
}
