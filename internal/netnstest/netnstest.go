// Package netnstest runs a test inside a network namespace of its own, so that tests of
// multicast (mDNS) and direct TCP never touch the host's network: the test binary re-runs
// itself, for that one test, under `unshare -n` (as root; `unshare -rn`, a user namespace,
// otherwise), and the child brings up a loopback-only network with multicast on and a
// 224.0.0.0/4 route.
//
//	func TestX(t *testing.T) {
//		if !netnstest.Run(t) {
//			return // the child ran the test; its result is this test's result
//		}
//		... // inside the namespace
//	}
package netnstest

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"snapback/internal/testenv"
)

const envMarker = "SNAPBACK_NETNS_TEST"

// Run reports whether the caller is inside the namespace. Outside, it runs the test in a
// child inside a fresh namespace, logs the child's output and fails when the child failed,
// then returns false. Without unshare or ip, or where namespaces are not permitted, the
// test is skipped with a loud message, or fails when CI=true.
//
// For a benchmark the child runs it with the parent's -test.benchtime and its figures are
// printed to stdout; the parent's own run is then skipped (its timing would be the
// child's process start-up).
func Run(t testing.TB) bool {
	t.Helper()
	if os.Getenv(envMarker) == t.Name() {
		setup(t)
		return true
	}
	testenv.RequireTool(t, "unshare", "ip") // util-linux, iproute2
	nsFlag := "-n"
	if os.Geteuid() != 0 {
		nsFlag = "-rn"
	}
	if out, err := exec.Command("unshare", nsFlag, "true").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "network namespaces not permitted here: %s", strings.TrimSpace(string(out)))
		return false
	}
	args := []string{nsFlag, os.Args[0], "-test.run", "^" + runPattern(t.Name()) + "$", "-test.count=1", "-test.v"}
	_, bench := t.(*testing.B)
	if bench {
		args = []string{nsFlag, os.Args[0], "-test.run", "^$", "-test.bench", "^" + runPattern(t.Name()) + "$",
			"-test.count=1", "-test.benchmem", "-test.benchtime", lookupFlag("test.benchtime", "1s")}
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), envMarker+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if bench {
		fmt.Printf("%s (run in a network namespace):\n%s", t.Name(), out.String())
		if err != nil || !strings.Contains(out.String(), "\nok") && !strings.Contains(out.String(), "\nPASS") {
			t.Fatalf("benchmark in network namespace failed: %v", err)
		}
		t.Skip("figures above come from the network namespace")
		return false
	}
	t.Logf("in network namespace:\n%s", out.String())
	if err != nil {
		t.Fatalf("test in network namespace failed: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not run in the network namespace")
	}
	return false
}

func lookupFlag(name, def string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return def
}

// runPattern turns "TestA/sub_b" into a -test.run pattern matching exactly that test.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = regexpQuote(p)
	}
	return strings.Join(parts, "$/^")
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// setup brings up loopback with multicast and routes 224.0.0.0/4 to it.
func setup(t testing.TB) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "set", "lo", "multicast", "on"},
		{"route", "add", "224.0.0.0/4", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// Refuse to run anywhere but a loopback-only namespace.
	out, err := exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(line, " lo:") {
			t.Fatalf("network namespace has an interface besides lo: %s", line)
		}
	}
}
