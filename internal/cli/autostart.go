package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"snapback/internal/atomicfile"
)

// autostart turns "start Snapback's tray at login" on and off for the current user, the way
// the OS expects: an XDG autostart entry (Linux), a LaunchAgent (macOS) or a Run registry value
// (Windows). Each OS has its own file, cmd_autostart_<os>.go, with newAutostart.
type autostart interface {
	// Enable makes the tray start at login by running exe with the argument "tray".
	Enable(exe string) (where string, err error)
	// Disable stops the tray from starting at login.
	Disable() (where string, err error)
	// Status reports whether the tray starts at login, and what decides it.
	Status() (on bool, where string, err error)
}

func newAutostartCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:       "autostart on|off|status",
		Short:     "Start Snapback's tray at login, or stop doing so",
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"on", "off", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := newAutostart()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch args[0] {
			case "on":
				exe, err := executable()
				if err != nil {
					return fmt.Errorf("autostart: locate snapback: %w", err)
				}
				where, err := a.Enable(exe)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "Snapback will start at login (%s).\n", where)
			case "off":
				where, err := a.Disable()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "Snapback will not start at login (%s).\n", where)
			default:
				on, where, err := a.Status()
				if err != nil {
					return err
				}
				if on {
					fmt.Fprintf(out, "on (%s)\n", where)
				} else {
					fmt.Fprintf(out, "off (%s)\n", where)
				}
			}
			return nil
		},
	}
	return cmd
}

// executable is the absolute path of the running binary with symlinks resolved, so the login
// entry keeps working when a package manager swaps a symlink.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Abs(exe)
}

// loginFile is a per-user file whose presence (and content) makes the tray start at login:
// the LaunchAgent plist on macOS, the XDG autostart entry elsewhere. Both are written
// atomically, so a crash never leaves a half-written entry that the session would run.
type loginFile string

// write replaces the file with content, creating its folder; it returns the file's path.
func (f loginFile) write(content string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(string(f)), 0o755); err != nil {
		return "", fmt.Errorf("autostart: %w", err)
	}
	if err := atomicfile.WriteFile(string(f), []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("autostart: %w", err)
	}
	return string(f), nil
}

// remove deletes the file; one that is already gone is fine.
func (f loginFile) remove() (string, error) {
	if err := os.Remove(string(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("autostart: %w", err)
	}
	return "removed " + string(f), nil
}

// read returns the file's content, or ok false when there is none.
func (f loginFile) read() (data []byte, ok bool, err error) {
	data, err = os.ReadFile(string(f))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("autostart: %w", err)
	}
	return data, true, nil
}
