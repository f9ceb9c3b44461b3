package device

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"snapback/internal/failure"
	"snapback/internal/lockdown"
	"snapback/internal/plistio"
)

// Pairing (protocol.md §4.4). A device that has never trusted this computer — on macOS and
// Windows every device Finder/iTunes never saw, on Linux every device over Wi-Fi and every
// device after the user chose "Reset Location & Privacy" — has to be paired: the host sends
// lockdown Pair with certificates it generates, the device shows "Trust This Computer?",
// answers PairingDialogResponsePending until the user taps Trust and enters the passcode,
// and then returns an EscrowBag. The record is saved through usbmuxd SavePairRecord, so
// that idevicebackup2, Finder's usbmuxd and go-ios tools share it.

// PairPrompt says what the user has to do on the device.
type PairPrompt int

// Pair prompts.
const (
	PromptTrust  PairPrompt = iota // the Trust dialog is on screen: tap Trust, enter the passcode
	PromptUnlock                   // the device is locked: unlock it so the dialog can appear
)

// PairOptions configure Pair.
type PairOptions struct {
	// Prompt is called when the user has to act on the device (once per kind of prompt),
	// so the app can show "Tap Trust on Anna's iPhone and enter its passcode". name is the
	// device's name as lockdown reports it without a session.
	Prompt func(p PairPrompt, name string)
	// Timeout is how long the user has to answer (default 2 minutes). The device's own
	// dialog stays up longer; after the timeout the run ends as failure.PairingPending.
	Timeout time.Duration
	// Poll is the interval between Pair requests while the dialog is pending (default 1 s;
	// libimobiledevice and go-ios leave re-sending to the user).
	Poll time.Duration
}

// Pair pairs this computer with the device e and saves the record through usbmuxd. Errors
// are classified: failure.PairingDenied (Don't Trust, or a supervised device that forbids
// pairing), failure.PairingPending (no answer within the timeout), failure.NotConnected,
// and others as they come.
func Pair(ctx context.Context, e Entry, opt PairOptions) error {
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Minute
	}
	if opt.Poll <= 0 {
		opt.Poll = time.Second
	}
	mux, c, err := dialMux(ctx)
	if err != nil {
		return failure.New(failure.NotConnected, err)
	}
	defer c.Close()
	defer bind(ctx, c)()
	buid, err := mux.ReadBuid()
	if err != nil || buid == "" {
		return failure.New(failure.NotConnected, ctxErr(ctx, fmt.Errorf("usbmuxd ReadBUID: %v", err)))
	}
	ld, err := mux.ConnectLockdown(e.DeviceID)
	if err != nil {
		return failure.New(failure.NotConnected, ctxErr(ctx, fmt.Errorf("connect to lockdownd of %s: %w", e.UDID, err)))
	}
	plain := &Session{Entry: e, ld: ld, conn: c}
	pub, err := plain.Value(ctx, "", "DevicePublicKey")
	if err != nil {
		return pairErr(ctx, fmt.Errorf("read DevicePublicKey: %w", err))
	}
	pubPEM, ok := pub.([]byte)
	if !ok {
		return failure.Newf(failure.Protocol, "DevicePublicKey is %T, not data", pub)
	}
	wifiMAC, _ := valueString(ctx, plain, "WiFiAddress")
	name, _ := valueString(ctx, plain, "DeviceName")
	if name == "" {
		name = e.UDID
	}
	rec, err := newPairRecord(pubPEM)
	if err != nil {
		return failure.New(failure.Unknown, fmt.Errorf("generate pairing certificates: %w", err))
	}
	rec.HostID, rec.SystemBUID = lockdown.NewUUID(), buid
	req := map[string]any{
		"Request":         "Pair",
		"ProtocolVersion": "2",
		"PairRecord": map[string]any{
			"DeviceCertificate": rec.DeviceCertificate, "HostCertificate": rec.HostCertificate, "RootCertificate": rec.RootCertificate,
			"HostID": rec.HostID, "SystemBUID": rec.SystemBUID,
		},
		"PairingOptions": map[string]any{"ExtendedPairingErrors": true},
	}
	deadline := time.NewTimer(opt.Timeout)
	defer deadline.Stop()
	// The dialog appears as soon as the device gets a Pair from an unknown host, so the user
	// is told before the first request, not after the first "pending".
	prompted := map[PairPrompt]bool{PromptTrust: true}
	if opt.Prompt != nil {
		opt.Prompt(PromptTrust, name)
	}
	var lastCode string
	for {
		resp, err := plain.request(ctx, req)
		var le *LockdownError
		switch {
		case err == nil:
			bag, _ := resp["EscrowBag"].([]byte)
			if len(bag) == 0 {
				// iOS accepts a supervised pairing while locked without a bag (go-ios
				// ErrDeviceLockedPairingDeferred); a record without one cannot back up.
				return failure.Newf(failure.PairingPending, "the device accepted the pairing but sent no escrow bag").
					WithFix("unlock " + name + " and run snapback pair again")
			}
			if m, ok := resp["WiFiMACAddress"].(string); ok && m != "" {
				wifiMAC = m
			}
			rec.EscrowBag, rec.WiFiMACAddress = bag, wifiMAC
			return savePairRecord(ctx, e, rec)
		case errors.As(err, &le):
			lastCode = le.Code
			switch le.Code {
			case "PairingDialogResponsePending":
				if !prompted[PromptTrust] && opt.Prompt != nil {
					opt.Prompt(PromptTrust, name)
				}
				prompted[PromptTrust] = true
			case "PasswordProtected":
				if !prompted[PromptUnlock] && opt.Prompt != nil {
					opt.Prompt(PromptUnlock, name)
				}
				prompted[PromptUnlock] = true
			case "UserDeniedPairing":
				return (&failure.Error{Class: failure.PairingDenied, Detail: name + " answered Don't Trust"})
			case "PairingProhibitedOverThisConnection", "MCChallengeRequired", "SupervisedDeviceNotAllowed":
				// Supervised devices with allowHostPairing off refuse every new host.
				return (&failure.Error{Class: failure.PairingDenied, Detail: name + " does not allow pairing with new computers (" + le.Code + ")"}).
					WithFix("the device is managed (supervised); ask its administrator to allow pairing with this computer, or pair it from a computer it already trusts")
			default:
				return failure.New(failure.Protocol, fmt.Errorf("pair with %s: %w", name, err))
			}
		default:
			return pairErr(ctx, err)
		}
		select {
		case <-ctx.Done():
			return failure.New(failure.Cancelled, ctx.Err())
		case <-deadline.C:
			e := &failure.Error{Class: failure.PairingPending, Detail: fmt.Sprintf("no answer from %s within %s (%s)", name, opt.Timeout, lastCode)}
			if lastCode == "PasswordProtected" {
				e.Fix = "unlock " + name + ", then run snapback pair again and tap Trust"
			}
			return e
		case <-time.After(opt.Poll):
		}
	}
}

func pairErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return failure.New(failure.Cancelled, ctx.Err())
	}
	if failure.IsLinkLost(err) {
		return failure.New(failure.LinkLost, err)
	}
	return failure.New(failure.Unknown, err)
}

func valueString(ctx context.Context, s *Session, key string) (string, error) {
	v, err := s.Value(ctx, "", key)
	if err != nil {
		return "", err
	}
	str, _ := v.(string)
	return str, nil
}

// savePairRecord stores rec under the device's UDID through usbmuxd (SavePairRecord with the
// DeviceID, so usbmuxd announces Paired to its listeners).
func savePairRecord(ctx context.Context, e Entry, rec lockdown.PairRecord) error {
	data, err := rec.Marshal()
	if err != nil {
		return failure.New(failure.Unknown, err)
	}
	return muxRequest(ctx, map[string]any{
		"MessageType": "SavePairRecord", "PairRecordID": e.UDID, "PairRecordData": data, "DeviceID": e.DeviceID,
		"ProgName": label, "ClientVersionString": "snapback", "kLibUSBMuxVersion": 3,
	}, "save the pair record")
}

// muxRequest sends one usbmuxd request that is answered with a Result and checks it.
func muxRequest(ctx context.Context, msg map[string]any, what string) error {
	mux, c, err := dialMux(ctx)
	if err != nil {
		return failure.New(failure.NotConnected, err)
	}
	defer c.Close()
	defer bind(ctx, c)()
	if err := mux.Send(msg); err != nil {
		return pairErr(ctx, fmt.Errorf("%s: %w", what, err))
	}
	resp, err := mux.ReadMessage()
	if err != nil {
		return pairErr(ctx, fmt.Errorf("%s: %w", what, err))
	}
	var r struct{ Number int }
	if err := plistio.Unmarshal(resp.Payload, &r); err != nil {
		return failure.New(failure.Protocol, fmt.Errorf("%s: usbmuxd reply: %w", what, err))
	}
	if r.Number != 0 {
		return failure.New(failure.LocalIO, fmt.Errorf("%s: usbmuxd refused (result %d)", what, r.Number))
	}
	return nil
}

// Unpair tells the device to forget this computer (lockdown Unpair in a session) and deletes
// the record from usbmuxd. A device that no longer trusts the record still gets the record
// deleted.
func Unpair(ctx context.Context, e Entry) error {
	s, err := OpenEntry(ctx, e)
	if err == nil {
		_, err = s.request(ctx, map[string]any{"Request": "Unpair", "PairRecord": map[string]any{"HostID": s.pair.HostID}})
		s.Close()
		var le *LockdownError
		if err != nil && !(errors.As(err, &le) && le.Code == "InvalidHostID") {
			return pairErr(ctx, fmt.Errorf("unpair: %w", err))
		}
	} else if !errors.Is(err, ErrNotPaired) {
		return pairErr(ctx, err)
	}
	return muxRequest(ctx, map[string]any{
		"MessageType": "DeletePairRecord", "PairRecordID": e.UDID,
		"ProgName": label, "ClientVersionString": "snapback", "kLibUSBMuxVersion": 3,
	}, "delete the pair record")
}

// Validate checks that the device still trusts this computer's pair record (lockdown
// ValidatePair, then a session). It returns failure.NotPaired when it does not.
func Validate(ctx context.Context, e Entry) error {
	s, err := OpenEntry(ctx, e)
	if err != nil {
		if errors.Is(err, ErrNotPaired) {
			return (&failure.Error{Class: failure.NotPaired, Cause: err})
		}
		if errors.Is(err, ErrLocked) {
			return (&failure.Error{Class: failure.DeviceLocked, Cause: err})
		}
		return pairErr(ctx, err)
	}
	defer s.Close()
	return nil
}

// newPairRecord generates the keys and certificates a Pair request carries (see
// lockdown.IssuePairRecord). devicePubPEM is lockdown's DevicePublicKey (PEM "RSA PUBLIC
// KEY", or PKIX).
func newPairRecord(devicePubPEM []byte) (lockdown.PairRecord, error) {
	blk, _ := pem.Decode(devicePubPEM)
	if blk == nil {
		return lockdown.PairRecord{}, errors.New("DevicePublicKey is not PEM")
	}
	var devPub *rsa.PublicKey
	if k, err := x509.ParsePKCS1PublicKey(blk.Bytes); err == nil {
		devPub = k
	} else if k, err2 := x509.ParsePKIXPublicKey(blk.Bytes); err2 == nil {
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return lockdown.PairRecord{}, errors.New("DevicePublicKey is not an RSA key")
		}
		devPub = rk
	} else {
		return lockdown.PairRecord{}, fmt.Errorf("DevicePublicKey: %w", err)
	}
	keys, err := lockdown.GenerateKeys(2)
	if err != nil {
		return lockdown.PairRecord{}, err
	}
	return lockdown.IssuePairRecord(keys[0], keys[1], devPub)
}
