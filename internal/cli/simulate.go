package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
)

// simulateFlags are the knobs of `snapback simulate`.
type simulateFlags struct {
	listen        string
	unix          string
	devices       int
	files         int
	size          string
	seed          int64
	ios           string
	passcodeDelay time.Duration
	mutate        float64
	wifi          bool
	wifiOnly      bool
	state         string
	failCode      int
	hostile       bool
	dropAfter     string
	verbose       bool
	passwordFile  string
	kdfRounds     int
	mdns          bool
	mdnsIface     string
	privateMAC    bool
	heartbeat     time.Duration
	quirks        quirkFlags
}

func newSimulateCmd() *cobra.Command {
	var f simulateFlags
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run simulated iPhones behind a fake usbmuxd (for tests, demos and idevicebackup2)",
		Long: `Runs simulated iPhones behind a fake usbmuxd on TCP loopback, until SIGINT or SIGTERM.

The first line printed is USBMUXD_SOCKET_ADDRESS=127.0.0.1:PORT; export it and
libimobiledevice tools (ideviceinfo, idevicebackup2), go-ios and Snapback itself talk to
the simulated devices instead of real ones. With --state the pairing and the device
content survive restarts, so incremental backups can be tried.`,
		Example: `  eval "$(snapback simulate --listen 127.0.0.1:27015 --state /tmp/sim | head -1)"
  snapback simulate --devices 2 --files 2000 --size 2GB --wifi --passcode-delay 5s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			return runSimulate(ctx, cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:27015", "loopback TCP address of the fake usbmuxd")
	fl.StringVar(&f.unix, "unix", "", "also serve usbmuxd on this unix socket")
	fl.IntVar(&f.devices, "devices", 1, "number of simulated devices")
	fl.IntVar(&f.files, "files", 500, "files per device")
	fl.StringVar(&f.size, "size", "", "total content size per device, e.g. 500MB or 2GB (default: natural sizes)")
	fl.Int64Var(&f.seed, "seed", 1, "content seed (device i uses seed+i)")
	fl.StringVar(&f.ios, "ios", "17.5.1", "iOS version the devices report (16.1 and later ask for the passcode on every backup)")
	fl.DurationVar(&f.passcodeDelay, "passcode-delay", 2*time.Second, "how long the simulated user takes to type the passcode (negative: never)")
	fl.Float64Var(&f.mutate, "mutate", 0, "percent of files added, changed or deleted after each backup")
	fl.BoolVar(&f.wifi, "wifi", false, "also announce the devices over Wi-Fi (ConnectionType Network)")
	fl.BoolVar(&f.wifiOnly, "wifi-only", false, "announce the devices over Wi-Fi only")
	fl.StringVar(&f.state, "state", "", "folder that keeps pair records and device content across restarts")
	fl.IntVar(&f.failCode, "fail-code", 0, "make backups fail with this device error code (104, 105, 208, 212, …)")
	fl.BoolVar(&f.hostile, "hostile", false, "send path-traversal attempts (never use with idevicebackup2)")
	fl.StringVar(&f.dropAfter, "drop-after", "", "cut each mobilebackup2 connection after this many bytes, e.g. 10MB")
	fl.BoolVar(&f.verbose, "verbose", false, "log protocol traffic")
	fl.StringVar(&f.passwordFile, "backup-password-file", "", "start the devices with backup encryption on, using the first line of this file as the backup password (with --state, a device whose encryption was since changed through ChangePassword keeps that setting)")
	addQuirkFlags(fl, &f.quirks)
	fl.IntVar(&f.kdfRounds, "kdf-rounds", 10_000_000, "PBKDF2-SHA256 rounds of the devices' keybags (lower it for fast demos; real devices use 10,000,000)")
	addSimulateWiFiFlags(fl, &f)
	return cmd
}

func runSimulate(ctx context.Context, cmd *cobra.Command, f simulateFlags) error {
	if f.devices < 1 {
		return errors.New("--devices must be at least 1")
	}
	size, err := parseSize(f.size)
	if err != nil {
		return fmt.Errorf("--size: %w", err)
	}
	drop, err := parseSize(f.dropAfter)
	if err != nil {
		return fmt.Errorf("--drop-after: %w", err)
	}
	if f.kdfRounds < 1 {
		return errors.New("--kdf-rounds must be at least 1")
	}
	password, err := readPasswordFile(f.passwordFile)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))

	sim, err := devicesim.Start(devicesim.Options{TCPAddr: f.listen, UnixPath: f.unix, StateDir: f.state, Logger: log,
		HeartbeatInterval: f.heartbeat})
	if err != nil {
		return err
	}
	defer sim.Close()

	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "USBMUXD_SOCKET_ADDRESS=%s\n", sim.Addr())
	for i := range f.devices {
		id := devicesim.DefaultIdentity(i)
		id.ProductVersion = f.ios
		var stateDir string
		if f.state != "" {
			stateDir = filepath.Join(f.state, "devices", id.UDID, "backup")
		}
		bopts := backupsim.Options{
			Identity: backupsim.Identity{
				UDID: id.UDID, DeviceName: id.DeviceName, ProductType: id.ProductType,
				ProductVersion: id.ProductVersion, BuildVersion: id.BuildVersion, SerialNumber: id.SerialNumber,
				PhoneNumber: id.PhoneNumber, IMEI: id.IMEI, ICCID: id.ICCID,
			},
			Seed:          f.seed + int64(i),
			Files:         f.files,
			TotalSize:     size,
			StateDir:      stateDir,
			PasscodeDelay: f.passcodeDelay,
			FailCode:      f.failCode,
			Hostile:       f.hostile,
			MutatePercent: f.mutate,
			Password:      password,
			KDFRounds:     f.kdfRounds,
		}
		dcfg := devicesim.DeviceConfig{
			Identity:        id,
			USB:             !f.wifiOnly,
			WiFi:            f.wifi || f.wifiOnly,
			DropBackupAfter: drop,

			AnnouncedWiFiAddress: announcedMAC(f, id.UDID),
		}
		if err := f.quirks.apply(f.seed+int64(i), &bopts, &dcfg, cmd.Flags().Changed); err != nil {
			return err
		}
		agent, err := backupsim.New(bopts)
		if err != nil {
			return fmt.Errorf("device %d: %w", i+1, err)
		}
		dcfg.Backup = agent
		dev, err := sim.AddDevice(dcfg)
		if err != nil {
			return err
		}
		usb, wifi := dev.DeviceIDs()
		fmt.Fprintf(out, "# device %d: %s %q iOS %s usb-id=%d wifi-id=%d encrypted=%v\n", i+1, dev.UDID(), id.DeviceName, id.ProductVersion, usb, wifi, agent.WillEncrypt())
	}
	if f.unix != "" {
		// libusbmuxd strips "UNIX:" and go-ios v1.3.2 honours "unix://": one value for both.
		fmt.Fprintf(out, "# unix socket: USBMUXD_SOCKET_ADDRESS=UNIX://%s\n", f.unix)
	}
	if err := startSimulateWiFi(ctx, sim, f, out, log); err != nil {
		return err
	}
	log.Info("simulator running; stop with Ctrl-C", "addr", sim.Addr(), "devices", f.devices)
	<-ctx.Done()
	log.Info("stopping")
	err = sim.Close()
	for _, d := range sim.Devices() {
		c := d.Counters()
		log.Info("device connections", "udid", d.UDID(), "lockdown", c.Lockdown, "sessions", c.Sessions,
			"notification_proxy", c.NotificationProxy, "afc", c.AFC, "mobilebackup2", c.Backup,
			"posted", c.Posted, "relayed", c.Relayed, "wifi_direct", c.DirectConnects)
	}
	return err
}

// readPasswordFile returns the first line of path ("" for no path). The simulator takes
// the backup password from a file, not an argument, so it never shows in process lists;
// it is never printed or logged.
func readPasswordFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--backup-password-file: %w", err)
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, maxPasswordLen).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("--backup-password-file %s: first line: %w", path, err)
	}
	pw := strings.TrimRight(string(line), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("--backup-password-file %s: the first line is empty", path)
	}
	return pw, nil
}

// parseSize reads sizes like 2GB, 500MB, 1.5GiB, 1024 (bytes). "" is 0.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	}
	upper := strings.ToUpper(s)
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(upper, u.suffix) {
			upper, mult = strings.TrimSpace(strings.TrimSuffix(upper, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(upper, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("bad size %q (want e.g. 500MB, 2GB, 1.5GiB)", s)
	}
	return int64(v * mult), nil
}
