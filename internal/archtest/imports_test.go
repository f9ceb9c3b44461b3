package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "snapback"

// listedPackage is the part of `go list -json` the rules read.
type listedPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	Deps       []string
}

// under reports whether path is pkg or one of its subpackages.
func under(path, pkg string) bool {
	return path == pkg || strings.HasPrefix(path, pkg+"/")
}

// simulatorCommand reports whether rel (slash-separated, from the module root) is one of the
// only non-test files outside the simulator that may import it: the files of the commands
// that run the simulated iPhone on purpose, `snapback simulate` (simulate*.go) and
// `snapback demo` (demo*.go).
func simulatorCommand(rel string) bool {
	dir, name := filepath.Split(rel)
	return dir == "internal/cli/" && (strings.HasPrefix(name, "simulate") || strings.HasPrefix(name, "demo"))
}

// violations lists every broken import rule of the module rooted at root, one line each.
func violations(root string) ([]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		if under(p.ImportPath, module) {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < 10 {
		return nil, fmt.Errorf("go list found only %d packages of %s", len(pkgs), module)
	}
	var bad []string
	report := func(p listedPackage, format string, args ...any) {
		bad = append(bad, p.ImportPath+": "+fmt.Sprintf(format, args...))
	}
	m := func(rel string) string { return module + "/" + rel }
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if under(imp, "github.com/danielpaulus/go-ios") && !under(p.ImportPath, m("internal/device")) {
				report(p, "imports %s; go-ios belongs in internal/device alone", imp)
			}
		}
		if under(p.ImportPath, m("tray")) || under(p.ImportPath, m("notify")) {
			for _, d := range p.Deps {
				for _, f := range []string{"internal/store", "internal/device", "internal/engine"} {
					if under(d, m(f)) {
						report(p, "depends on %s; tray and notify see state and commands, never stores, devices or the engine", d)
					}
				}
			}
		}
		for _, pair := range [][2]string{{"internal/store", "internal/mobilebackup2"}, {"internal/mobilebackup2", "internal/store"}} {
			if under(p.ImportPath, m(pair[0])) {
				for _, d := range p.Deps {
					if under(d, m(pair[1])) {
						report(p, "depends on %s; %s and %s know nothing of each other (internal/app joins them)", d, pair[0], pair[1])
					}
				}
			}
		}
		if !under(p.ImportPath, m("internal/devicesim")) && slices.ContainsFunc(p.Imports, func(i string) bool { return under(i, m("internal/devicesim")) }) {
			// Allowed per file, not per package: internal/cli holds every command.
			for _, name := range append(slices.Clone(p.GoFiles), p.CgoFiles...) {
				path := filepath.Join(p.Dir, name)
				f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
				if err != nil {
					return nil, err
				}
				rel, _ := filepath.Rel(root, path)
				for _, is := range f.Imports {
					imp := strings.Trim(is.Path.Value, `"`)
					if under(imp, m("internal/devicesim")) && !simulatorCommand(filepath.ToSlash(rel)) {
						report(p, "%s imports %s; the simulator is for tests, `snapback simulate` and `snapback demo` only", filepath.ToSlash(rel), imp)
					}
				}
			}
		}
	}
	return bad, nil
}

// moduleRoot is the folder that holds go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		t.Fatalf("go env GOMOD: %q %v", out, err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func TestImportRules(t *testing.T) {
	bad, err := violations(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// TestImportRulesCatchPlantedImports plants one forbidden import per rule in a copy of the
// module and checks that each is reported: a rule that cannot fail protects nothing.
func TestImportRulesCatchPlantedImports(t *testing.T) {
	root := moduleRoot(t)
	cp := t.TempDir()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(cp, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(cp, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad, err := violations(cp); err != nil || len(bad) != 0 {
		t.Fatalf("the clean copy: %v %v", bad, err)
	}
	plants := []struct{ file, pkg, imp, want string }{
		{"notify/planted.go", "notify", "snapback/internal/store", "snapback/notify: depends on snapback/internal/store"},
		{"tray/planted.go", "tray", "snapback/internal/engine", "snapback/tray: depends on snapback/internal/engine"},
		{"internal/store/planted.go", "store", "snapback/internal/mobilebackup2", "snapback/internal/store: depends on snapback/internal/mobilebackup2"},
		{"internal/engine/planted.go", "engine", "github.com/danielpaulus/go-ios/ios", "snapback/internal/engine: imports github.com/danielpaulus/go-ios/ios"},
		{"internal/cli/planted.go", "cli", "snapback/internal/devicesim", "internal/cli/planted.go imports snapback/internal/devicesim"},
	}
	for _, p := range plants {
		src := fmt.Sprintf("package %s\n\nimport _ %q\n", p.pkg, p.imp)
		if err := os.WriteFile(filepath.Join(cp, p.file), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bad, err := violations(cp)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(bad, "\n")
	for _, p := range plants {
		if !strings.Contains(all, p.want) {
			t.Errorf("planted %s in %s: not reported; got:\n%s", p.imp, p.file, all)
		}
	}
}
