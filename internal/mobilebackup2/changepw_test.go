package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
)

// ChangePassword sends exactly the keys of protocol.md §7.4 (no Options wrapper; the absent
// key selects the operation), answers a stray DL request instead of stalling, and
// classifies the device's result without ever echoing a password.
func TestChangePasswordRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new []byte
		want     map[string]any
		code     int64
		sentinel error
	}{
		{"enable", nil, []byte("new pw"), map[string]any{"NewPassword": "new pw"}, 0, nil},
		{"disable", []byte("old pw"), nil, map[string]any{"OldPassword": "old pw"}, 0, nil},
		{"change", []byte("old pw"), []byte("new pw"), map[string]any{"OldPassword": "old pw", "NewPassword": "new pw"}, 0, nil},
		{"wrong", []byte("old pw"), nil, map[string]any{"OldPassword": "old pw"}, 207, failure.WrongPassword},
		{"passcode", nil, []byte("new pw"), map[string]any{"NewPassword": "new pw"}, 208, failure.DeviceLocked},
		{"refused", nil, []byte("new pw"), map[string]any{"NewPassword": "new pw"}, 100, failure.DeviceError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, d := pair(t)
			wait := d.run(func(d *fakeDevice) error {
				if err := d.handshake(); err != nil {
					return err
				}
				m, err := d.recv()
				if err != nil {
					return err
				}
				got, _ := m.Arg(1).(map[string]any)
				want := map[string]any{"MessageName": "ChangePassword", "TargetIdentifier": testUDID}
				for k, v := range tc.want {
					want[k] = v
				}
				if !reflect.DeepEqual(got, want) {
					return fmt.Errorf("request %v; want %v", got, want)
				}
				// A device never asks this, but the host must answer rather than hang.
				if err := d.send(devicelink.GetFreeDiskSpace, devicelink.EmptyParameter); err != nil {
					return err
				}
				if code, _, err := d.status(); err != nil || code != -1 {
					return fmt.Errorf("stray request answered %d, %v; want -1", code, err)
				}
				res := map[string]any{"MessageName": "Response", "ErrorCode": uint64(tc.code)}
				if tc.code != 0 {
					res["ErrorDescription"] = "Simulated"
				}
				return d.send(devicelink.ProcessMessage, res)
			})
			ctx := context.Background()
			if err := c.Handshake(ctx); err != nil {
				t.Fatal(err)
			}
			err := c.ChangePassword(ctx, testUDID, tc.old, tc.new)
			if werr := wait(); werr != nil {
				t.Fatal(werr)
			}
			switch {
			case tc.sentinel == nil && err != nil:
				t.Fatalf("ChangePassword: %v", err)
			case tc.sentinel != nil && !errors.Is(err, tc.sentinel):
				t.Fatalf("ChangePassword: %v; want %v", err, tc.sentinel)
			}
			var e *failure.Error
			if err != nil && (!errors.As(err, &e) || e.DeviceCode != tc.code) {
				t.Errorf("error %#v; want device code %d", err, tc.code)
			}
			if err != nil && (strings.Contains(err.Error(), "old pw") || strings.Contains(err.Error(), "new pw")) {
				t.Errorf("error text %q contains a password", err)
			}
		})
	}
	c, _ := pair(t)
	if err := c.ChangePassword(context.Background(), testUDID, nil, nil); !errors.Is(err, ErrNoPasswordGiven) {
		t.Errorf("no passwords: %v; want ErrNoPasswordGiven", err)
	}
}
