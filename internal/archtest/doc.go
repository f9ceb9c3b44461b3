// Package archtest holds no code: its tests enforce the import direction that the design
// states (go-ios only in internal/device; tray and notify see no store, device or engine;
// store and mobilebackup2 know nothing of each other; the simulator only in tests,
// `snapback simulate` and `snapback demo`). `make lint` runs them.
package archtest
