// Command snapback backs up iPhones and iPads once a day, as a tray app or a headless daemon.
// Everything lives in internal/cli and below; this file only runs it.
package main

import (
	"os"

	"snapback/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() { os.Exit(cli.Main(version)) }
