package browse

import (
	"errors"
	"testing"
)

func TestSafeRelPath(t *testing.T) {
	ok := []string{"a", "Library/SMS/sms.db", "..hidden", "a/..b/c", "a b/ü.txt", "a..", "Media/DCIM/100APPLE/IMG_0001.JPG"}
	bad := []string{"", "/a", "..", "../a", "a/..", "a/../b", ".", "./a", "a/./b", "a//b", "a/", `a\b`, "a\x00b"}
	for _, p := range ok {
		if _, err := safeRelPath(p); err != nil {
			t.Errorf("safeRelPath(%q) = %v; want ok", p, err)
		}
	}
	for _, p := range bad {
		if _, err := safeRelPath(p); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("safeRelPath(%q) = %v; want ErrUnsafePath", p, err)
		}
	}
	for _, d := range []string{"", ".", "..", "a/b", `a\b`, "x\x00"} {
		if err := safeDomain(d); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("safeDomain(%q) = %v; want ErrUnsafePath", d, err)
		}
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, path string
		want          bool
	}{
		{"Media/DCIM/**", "Media/DCIM/100APPLE/IMG_1.JPG", true},
		{"Media/DCIM/**", "Media/PhotoData/x", false},
		{"Media/*/x", "Media/DCIM/x", true},
		{"Media/*/x", "Media/DCIM/100APPLE/x", false},
		{"**/x.db", "x.db", true},
		{"**/x.db", "a/b/x.db", true},
		{"IMG_????.JPG", "IMG_0001.JPG", true},
		{"IMG_[!0]*.JPG", "IMG_0001.JPG", false},
		{"IMG_[0-9]*", "IMG_1x", true},
		{"Lib/ü*.txt", "Lib/über.txt", true},
		{"a+b(c).txt*", "a+b(c).txt", true},
	}
	for _, c := range cases {
		re, err := globRegexp(c.pattern)
		if err != nil {
			t.Fatalf("globRegexp(%q): %v", c.pattern, err)
		}
		if got := re.MatchString(c.path); got != c.want {
			t.Errorf("glob %q on %q = %v; want %v", c.pattern, c.path, got, c.want)
		}
	}
	if _, err := compileFilter(Filter{Pattern: "a[b"}); err == nil {
		t.Error("unclosed [ accepted")
	}
}
