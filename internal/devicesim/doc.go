// Package devicesim is a simulated iPhone/iPad transport: a fake usbmuxd (TCP loopback and
// optionally a unix socket) in front of any number of simulated devices, each with its own
// pair record, lockdownd (with session TLS), notification_proxy, an AFC subset for the
// iTunes sync lock, and com.apple.mobilebackup2 plumbing that hands the service connection
// to a BackupService (package backupsim provides the real one).
//
// It is faithful enough that clients knowing nothing of Snapback accept it: Debian's
// libimobiledevice 1.3.0 tools (ideviceinfo, idevicebackup2) and go-ios. The wire rules it
// follows are in shared/reference/protocol.md (§2 usbmuxd, §3 lockdownd, §4 pairing and
// TLS, §5 notification_proxy, §6 AFC, §9 Wi-Fi, §12 the simulator contract).
//
// # Using it in tests
//
//	sim, err := devicesim.Start(devicesim.Options{})        // 127.0.0.1:<free port>
//	defer sim.Close()
//	dev, err := sim.AddDevice(devicesim.DeviceConfig{
//		Identity: devicesim.Identity{UDID: "00008110-000A1B2C3D4E5F60"}, // others defaulted
//		USB: true, WiFi: true, // listed twice: ConnectionType USB and Network
//		Backup: backupDevice, // e.g. a *backupsim.Device; nil = mobilebackup2 refused
//	})
//	t.Setenv("USBMUXD_SOCKET_ADDRESS", sim.Addr()) // go-ios and libimobiledevice both accept host:port
//	...
//	sim.Detach(dev.UDID())   // Listen clients get Detached; open connections are cut
//	sim.Attach(dev.UDID())   // new DeviceIDs, Attached events
//	sim.SetTransports(dev.UDID(), false, true) // Wi-Fi only from now on
//	dev.Counters()           // how many lockdown/NP/AFC/backup connections a client made
//	dev.Post(devicesim.NotifyPasscodePresented) // device-side notification to observers
//	dev.AFCLocked("/com.apple.itunes.lock_sync") // is the sync lock held?
//
// With Options.UnixPath, USBMUXD_SOCKET_ADDRESS=UNIX://<path> works for both
// libimobiledevice and go-ios v1.3.2.
//
// Identities default from DefaultIdentity(i) for the i-th device, so omitted fields are
// stable. Each AddDevice without a StateDir generates three RSA-2048 keys (a few hundred
// milliseconds); with Options.StateDir the pairing is generated once per UDID and reused
// after restarts, together with the usbmuxd pair store and the SystemBUID.
//
// # Behaviour worth knowing
//
//   - usbmuxd answers in XML, echoes tags, allows several commands per control socket
//     before Connect, and numbers devices from 1. Connect's PortNumber is byte-swapped
//     (clients send htons(port)). Port 62078 is lockdownd; other ports exist only after a
//     StartService and accept exactly one connection within 30 seconds.
//   - lockdownd answers QueryType and a few public GetValue keys without a session;
//     everything else needs StartSession with the pair record's HostID. The TLS client
//     certificate must be the pair record's RootCertificate (OpenSSL libimobiledevice) or
//     HostCertificate (go-ios) or be signed by the root. Errors carry `Error` and no
//     `Result`. Every started service uses TLS (EnableServiceSSL true).
//   - com.apple.mobilebackup2 needs the pair record's EscrowBag unless
//     DeviceConfig.AllowMissingEscrowBag (go-ios's stock StartService sends none).
//     DeviceConfig.DropBackupAfter cuts the link after N bytes.
//   - notification_proxy relays PostNotification to every observing connection of the
//     same device and answers Shutdown with ProxyDeath (libimobiledevice otherwise stalls
//     30 s per post).
//   - AFC is an in-memory filesystem per device with flock semantics on FILE_LOCK across
//     connections; locks are released on unlock, close and disconnect. It starts with
//     /iTunes_Control/iTunes/iTunesPrefs and IC-Info.sidb (Info.plist's iTunes Files).
//   - installation_proxy answers Browse with the user apps of the BackupService if it has
//     an `Apps() []map[string]any` method (backupsim's bundles with SINF and metadata), in
//     BrowsingProgress pages of two and a final Complete; ReturnAttributes is honoured.
//     DeviceConfig.NoInstallationProxy makes it InvalidService. springboardservices
//     answers getIconPNGData with a small PNG per listed app.
//   - A device attached over Wi-Fi is listed a second time with ConnectionType "Network"
//     and its own DeviceID. go-ios reaches it through usbmuxd Connect like a USB device;
//     libimobiledevice's -n mode connects directly to the entry's NetworkAddress, so each
//     Wi-Fi device also listens on a random loopback address 127.x.y.z (lockdownd on 62078,
//     every started service on its port). Counters.DirectConnects counts those connections.
//   - Sim.StartMDNS(iface) announces every device reachable over Wi-Fi as real devices do:
//     Bonjour _apple-mobdev2._tcp, instance "<wifi-mac>@<fe80 EUI-64>", SRV to lockdownd on the
//     device's own 127.x address (github.com/hashicorp/mdns answers the queries). Detaching
//     the Wi-Fi entry (SetTransports, Detach) stops the advert and cuts the connections: the
//     device dropping off the network. DeviceConfig.AnnouncedWiFiAddress (e.g.
//     PrivateWiFiAddress(udid)) makes the advert carry a private address that is not the pair
//     record's WiFiMACAddress, as iOS 26.4 does.
//   - com.apple.mobile.heartbeat sends {Command: Marco, Interval: N} every
//     Options.HeartbeatInterval (default 10 s) and closes the connection when no Polo comes
//     back within 1.5 intervals plus a second.
//
// # Ownership
//
// Start creates the only long-lived goroutines (one accept loop per listener, including
// the Wi-Fi direct ones, and one per connection); Close cancels the simulator's context,
// closes every listener and connection and waits for them. A BackupService's Serve runs on
// its connection's goroutine with a context that ends when the simulator closes or the
// entry the connection came through is detached (the connection is closed too).
//
// # Not simulated
//
// Pairing (the Pair request and the trust dialog): devices are pre-paired and their
// records pre-provisioned in the usbmuxd store. The binary (version 0) usbmuxd protocol:
// it is answered with BADVERSION. Services other than notification_proxy, AFC,
// installation_proxy (Browse only), springboardservices (icons only) and mobilebackup2
// (diagnostics_relay, …) answer InvalidService. A host that never runs a heartbeat keeps its
// other connections (real iOS may close them); SleepyTime is never sent.
package devicesim
