// Command gen draws Snapback's icons into icons/assets. Run it with `go generate ./icons`; the
// outputs are committed so that builds need no generator, and icons_test.go fails when the
// committed files and the drawing code disagree.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"snapback/icons/internal/art"
)

func main() {
	out := flag.String("out", "assets", "directory to write the assets into")
	flag.Parse()
	for _, f := range art.Files() {
		path := filepath.Join(*out, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, f.Data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}
