package device

import (
	"errors"
	"sync"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/failure"
)

type prompts struct {
	mu   sync.Mutex
	list []PairPrompt
	name string
}

func (p *prompts) add(k PairPrompt, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, k)
	p.name = name
}

func (p *prompts) get() ([]PairPrompt, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PairPrompt(nil), p.list...), p.name
}

// An unpaired device: no record, Open says not paired; Pair announces the Trust dialog,
// waits out PairingDialogResponsePending, saves the record through usbmuxd, and from then
// on sessions and the escrow-bag service start work; Unpair makes it untrusted again.
func TestPairUnpairedDevice(t *testing.T) {
	sim := startSim(t)
	d, err := sim.AddDevice(devicesim.DeviceConfig{Identity: devicesim.Identity{DeviceName: "Anna's iPhone"},
		Unpaired: true, TrustDelay: 300 * time.Millisecond, PairLocked: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	e, err := Find(ctx, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, d.UDID()); !errors.Is(err, ErrNotPaired) {
		t.Fatalf("Open before pairing = %v; want ErrNotPaired", err)
	}
	if err := Validate(ctx, e); !errors.Is(err, failure.NotPaired) {
		t.Fatalf("Validate before pairing = %v; want NotPaired", err)
	}
	var p prompts
	start := time.Now()
	if err := Pair(ctx, e, PairOptions{Prompt: p.add, Poll: 50 * time.Millisecond}); err != nil {
		t.Fatalf("Pair: %v", err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("Pair returned before the simulated user tapped Trust")
	}
	got, name := p.get()
	if len(got) != 2 || got[0] != PromptTrust || got[1] != PromptUnlock || name != "Anna's iPhone" {
		t.Errorf("prompts = %v for %q; want [trust unlock] for Anna's iPhone", got, name)
	}
	if n := d.TrustDialogs(); n != 1 {
		t.Errorf("device showed the Trust dialog %d times; want 1", n)
	}
	if err := Validate(ctx, e); err != nil {
		t.Fatalf("Validate after pairing: %v", err)
	}
	s, err := Open(ctx, d.UDID())
	if err != nil {
		t.Fatalf("Open after pairing: %v", err)
	}
	if !s.HasEscrowBag() {
		t.Error("saved pair record has no EscrowBag")
	}
	// The device starts services only for a session of a trusted host; the notification
	// proxy proves the TLS session with the new host certificate works.
	np, err := s.StartNotifications(ctx)
	if err != nil {
		t.Fatalf("StartNotifications after pairing: %v", err)
	}
	np.Close(ctx)
	s.Close()

	if err := Unpair(ctx, e); err != nil {
		t.Fatalf("Unpair: %v", err)
	}
	if len(d.TrustedHosts()) != 0 {
		t.Errorf("device still trusts %v after Unpair", d.TrustedHosts())
	}
	if _, err := Open(ctx, d.UDID()); !errors.Is(err, ErrNotPaired) {
		t.Fatalf("Open after Unpair = %v; want ErrNotPaired", err)
	}
}

func TestPairDenied(t *testing.T) {
	sim := startSim(t)
	d, _ := sim.AddDevice(devicesim.DeviceConfig{Unpaired: true, TrustDeny: true})
	ctx := ctxT(t)
	e, err := Find(ctx, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	err = Pair(ctx, e, PairOptions{Poll: 20 * time.Millisecond})
	fe, ok := failure.As(err)
	if !ok || fe.Class != failure.PairingDenied || fe.Retryable() {
		t.Fatalf("Pair on Don't Trust = %v; want non-retryable PairingDenied", err)
	}
	if fe.Remedy() == "" {
		t.Error("PairingDenied without a remedy")
	}
}

func TestPairPendingTimesOut(t *testing.T) {
	sim := startSim(t)
	d, _ := sim.AddDevice(devicesim.DeviceConfig{Unpaired: true, TrustDelay: time.Hour})
	ctx := ctxT(t)
	e, err := Find(ctx, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	err = Pair(ctx, e, PairOptions{Poll: 20 * time.Millisecond, Timeout: 200 * time.Millisecond})
	if !errors.Is(err, failure.PairingPending) {
		t.Fatalf("Pair without an answer = %v; want PairingPending", err)
	}
}

// A device listed by usbmuxd under its dashless USB serial is known by lockdown's UDID.
func TestSerialUDIDIsCanonical(t *testing.T) {
	sim := startSim(t)
	d, _ := sim.AddDevice(devicesim.DeviceConfig{SerialUDID: true})
	ctx := ctxT(t)
	list, err := List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].UDID != d.UDID() {
		t.Fatalf("List = %+v; want the dashed UDID %s", list, d.UDID())
	}
	s, err := Open(ctx, d.UDID())
	if err != nil {
		t.Fatalf("Open by canonical UDID: %v", err)
	}
	defer s.Close()
	info, err := s.Info(ctx)
	if err != nil || info.UDID != d.UDID() {
		t.Fatalf("Info = %+v, %v", info.UDID, err)
	}
}

func TestCanonicalUDID(t *testing.T) {
	for in, want := range map[string]string{
		"00008110001A2B3C4D5E6F60":                 "00008110-001A2B3C4D5E6F60",
		"00008110-001A2B3C4D5E6F60":                "00008110-001A2B3C4D5E6F60",
		"0123456789abcdef0123456789abcdef01234567": "0123456789abcdef0123456789abcdef01234567",
		"not-a-udid-at-all-xxxxxx":                 "not-a-udid-at-all-xxxxxx",
	} {
		if got := CanonicalUDID(in); got != want {
			t.Errorf("CanonicalUDID(%q) = %q; want %q", in, got, want)
		}
	}
}
