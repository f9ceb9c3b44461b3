package browse

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzSafeRelPath: whatever a hostile Manifest.db holds, an accepted path stays inside the
// output folder once joined. Seeds live in testdata/fuzz/FuzzSafeRelPath.
func FuzzSafeRelPath(f *testing.F) {
	f.Add("Library/SMS/sms.db", "HomeDomain")
	f.Fuzz(func(t *testing.T, p, domain string) {
		root := filepath.Join(string(filepath.Separator)+"out", "root")
		if local, err := safeRelPath(p); err == nil {
			if !filepath.IsLocal(local) {
				t.Fatalf("safeRelPath(%q) = %q, not local", p, local)
			}
			joined := filepath.Join(root, local)
			if !strings.HasPrefix(joined, root+string(filepath.Separator)) {
				t.Fatalf("safeRelPath(%q) = %q escapes to %q", p, local, joined)
			}
			for _, e := range strings.Split(filepath.ToSlash(local), "/") {
				if e == ".." || e == "." || e == "" {
					t.Fatalf("safeRelPath(%q) = %q has element %q", p, local, e)
				}
			}
		}
		if safeDomain(domain) == nil {
			if j := filepath.Join(root, domain); filepath.Dir(j) != root {
				t.Fatalf("safeDomain accepted %q, which is not one element", domain)
			}
		}
	})
}
