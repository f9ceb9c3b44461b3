package push

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/testenv"
	"snapback/notify"
)

// syncBuffer is the shared goroutine-safe log sink.
type syncBuffer = testenv.Buffer

// waitFor polls cond until it holds or the deadline passes (the condition is state another
// goroutine changes; there is no event to wait on across an HTTP server boundary).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, d, what, cond)
}

type hook struct {
	mu   sync.Mutex
	got  []map[string]string
	srv  *httptest.Server
	hang chan struct{} // when not nil, requests block until it is closed
}

func newHook(t *testing.T, hang bool) *hook {
	h := &hook{}
	if hang {
		h.hang = make(chan struct{})
	}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.hang != nil {
			select {
			case <-h.hang:
			case <-r.Context().Done():
			}
			return
		}
		var m map[string]string
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &m); err != nil {
			m = map[string]string{"raw": string(body)}
		}
		m["query.token"] = r.URL.Query().Get("token")
		h.mu.Lock()
		h.got = append(h.got, m)
		h.mu.Unlock()
	}))
	t.Cleanup(func() {
		if h.hang != nil {
			close(h.hang)
		}
		h.srv.Close()
	})
	return h
}

func (h *hook) messages() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]string(nil), h.got...)
}

// url is the shoutrrr URL of the hook, with a secret token in its query.
func (h *hook) url(token string) string {
	return "generic+" + h.srv.URL + "/hook?template=json&token=" + token
}

func startDispatcher(t *testing.T, o Options) *Dispatcher {
	d := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Dispatcher.Run did not stop")
		}
	})
	return d
}

func fixed(chans ...Channel) Resolver {
	return func(context.Context, string) ([]Channel, []error) { return chans, nil }
}

var anna = notify.Device{UDID: "00008030-001A2B3C4D5E802E", Name: "Anna's iPhone"}

func TestWebhookGetsPasscodeCompletedAndFailedWithDeviceAndRemedy(t *testing.T) {
	h := newHook(t, false)
	d := startDispatcher(t, Options{Resolve: fixed(Channel{Label: "hook", URL: h.url("s3cr3t-token")})})
	remedy := "Reconnect it with USB or bring it back on Wi-Fi; Snapback retries within the backup window."
	for _, m := range []notify.Message{
		notify.Passcode(anna),
		notify.Done(anna, notify.Run{Sent: 3_400_000_000, Size: 3_400_000_000, Took: 4 * time.Minute, Via: notify.USB}),
		notify.Failure(anna, "The iPhone was disconnected", remedy),
	} {
		if err := d.Notify(m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "three webhook calls", func() bool { return len(h.messages()) == 3 })
	got := h.messages()
	for i, want := range []string{"Enter your passcode on Anna's iPhone", "Anna's iPhone is backed up", "Backup of Anna's iPhone failed"} {
		if got[i]["title"] != want {
			t.Errorf("message %d title = %q, want %q (in order)", i, got[i]["title"], want)
		}
		if got[i]["query.token"] != "s3cr3t-token" {
			t.Errorf("message %d: the webhook's own token did not arrive: %v", i, got[i])
		}
	}
	if !strings.Contains(got[2]["message"], remedy) {
		t.Errorf("failure message lacks the remedy: %q", got[2]["message"])
	}
	if !strings.Contains(got[0]["message"], "within 3 minutes") {
		t.Errorf("passcode message lacks the deadline: %q", got[0]["message"])
	}
}

func TestEventsFilterPerChannel(t *testing.T) {
	all, failures := newHook(t, false), newHook(t, false)
	d := startDispatcher(t, Options{Resolve: fixed(
		Channel{Label: "all", URL: all.url("a")},
		Channel{Label: "failures", URL: failures.url("f"), Wants: func(e string) bool { return e == "failed" }},
	)})
	d.Notify(notify.Done(anna, notify.Run{Sent: 1, Size: 1, Took: time.Second, Via: notify.WiFi}))
	d.Notify(notify.Failure(anna, "It broke", ""))
	waitFor(t, 10*time.Second, "both messages on the unfiltered channel", func() bool { return len(all.messages()) == 2 })
	waitFor(t, 10*time.Second, "the failure on the filtered channel", func() bool { return len(failures.messages()) == 1 })
	if m := failures.messages()[0]; !strings.Contains(m["title"], "failed") {
		t.Fatalf("filtered channel got %v", m)
	}
}

func TestChannelDownDoesNotDelayOthersAndSecretsStayOutOfTheLog(t *testing.T) {
	const secret = "planted-secret-7f3a9c"
	hung := newHook(t, true)
	ok := newHook(t, false)
	// A port nothing listens on: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()

	log := &syncBuffer{}
	d := startDispatcher(t, Options{
		Resolve: fixed(
			Channel{Label: "hung", URL: hung.url(secret)},
			Channel{Label: "refused", URL: fmt.Sprintf("generic+http://%s/x/%s?template=json", refused, secret)},
			Channel{Label: "ok", URL: ok.url("fine")},
		),
		Logger:  slog.New(slog.NewTextHandler(log, nil)),
		Backoff: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond},
		Timeout: 300 * time.Millisecond,
	})
	start := time.Now()
	for i := range 5 {
		if err := d.Notify(notify.Failure(anna, fmt.Sprintf("failure %d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("Notify blocked for %v behind channels that are down", took)
	}
	// The healthy channel gets all five although the others hang or refuse.
	waitFor(t, 10*time.Second, "all messages on the healthy channel", func() bool { return len(ok.messages()) == 5 })
	waitFor(t, 10*time.Second, "the refused channel to give up", func() bool { return strings.Contains(log.String(), "giving up") })
	out := log.String()
	if !strings.Contains(out, "will retry") || !strings.Contains(out, "refused") {
		t.Errorf("the failed delivery is not logged with its retry:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("the log contains the secret from the URL:\n%s", out)
	}
}

func TestPingsArriveInOrderDespiteRetries(t *testing.T) {
	var mu sync.Mutex
	var got []string
	failFirst := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if failFirst {
			failFirst = false // the first start ping fails once: the success must wait for it
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		got = append(got, r.URL.Path)
	}))
	defer srv.Close()
	urls := map[Stage]string{Start: "/uuid-1/start", Success: "/uuid-1", Failure: "/uuid-1/fail"}
	p := NewPinger(PingOptions{
		Resolve: func(_ context.Context, udid string, s Stage) (string, string, error) {
			return srv.URL + urls[s], s.String(), nil
		},
		Backoff: []time.Duration{50 * time.Millisecond},
		Timeout: 2 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, time.Second, "the pinger to run", func() bool { p.lanes.mu.Lock(); defer p.lanes.mu.Unlock(); return p.lanes.ctx != nil })
	for _, s := range []Stage{Start, Success, Start, Failure} {
		p.Ping(anna.UDID, s)
	}
	waitFor(t, 10*time.Second, "four pings", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 4 })
	want := []string{"/uuid-1/start", "/uuid-1", "/uuid-1/start", "/uuid-1/fail"}
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pings arrived as %v, want %v", got, want)
		}
	}
}

// TestSMTPFailureEmail sends the failure message as e-mail to Debian's aiosmtpd on loopback.
func TestSMTPFailureEmail(t *testing.T) {
	py := "/usr/bin/python3"
	testenv.RequireTool(t, py)
	if err := exec.Command(py, "-c", "import aiosmtpd").Run(); err != nil {
		testenv.Unavailable(t, "python3-aiosmtpd is not installed (%v); .ci/run installs it", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	maildir := filepath.Join(t.TempDir(), "mail")
	srv := exec.Command(py, "-m", "aiosmtpd", "-n", "-l", addr, "-c", "aiosmtpd.handlers.Mailbox", maildir)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	waitFor(t, 15*time.Second, "aiosmtpd to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	host, port, _ := net.SplitHostPort(addr)
	// aiosmtpd offers neither TLS nor AUTH; the password is in the URL as a user's would be
	// and must not leak, but is not sent (auth=None).
	mailURL := fmt.Sprintf("smtp://snapback:mail-pw-5531@%s:%s/?from=snapback@example.org&to=anna@example.org&auth=None&encryption=None&usestarttls=no", host, port)
	log := &syncBuffer{}
	defer func() { t.Log(log.String()) }()
	d := startDispatcher(t, Options{Resolve: fixed(Channel{Label: "mail", URL: mailURL}), Logger: slog.New(slog.NewTextHandler(log, nil))})
	d.Notify(notify.Failure(anna, "The backup disk is full", "Free space on /mnt/backup or choose another location."))
	var mail string
	waitFor(t, 15*time.Second, "the e-mail in the maildir", func() bool {
		files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
		if len(files) == 0 {
			return false
		}
		b, _ := os.ReadFile(files[0])
		mail = string(b)
		return true
	})
	for _, want := range []string{"Subject: Backup of Anna's iPhone failed", "To: anna@example.org", "The backup disk is full.", "Free space on /mnt/backup"} {
		if !strings.Contains(mail, want) {
			t.Errorf("e-mail lacks %q:\n%s", want, mail)
		}
	}
}

func TestScrubber(t *testing.T) {
	u := "smtp://user:pa%24%24word-9@mail.example:587/?to=a@b.example&token=tok-abcdef#frag-xyz"
	s := Scrubber(u)("dial smtp://user:pa%24%24word-9@mail.example:587/?to=a@b.example&token=tok-abcdef#frag-xyz: pa$$word-9 tok-abcdef")
	for _, secret := range []string{"pa$$word-9", "pa%24%24word-9", "tok-abcdef", "frag-xyz"} {
		if strings.Contains(s, secret) {
			t.Errorf("scrubbed text still has %q: %s", secret, s)
		}
	}
	if !strings.Contains(s, "REDACTED") {
		t.Errorf("nothing marked as redacted: %s", s)
	}
}

// TestPushIsRateLimitedLikeTheDesktop: behind notify.Gate (as the app wires it), ten failures
// in a row reach a push channel twice (the first, and one reminder after an hour), and a
// completed backup ends the streak.
func TestPushIsRateLimitedLikeTheDesktop(t *testing.T) {
	h := newHook(t, false)
	d := startDispatcher(t, Options{Resolve: fixed(Channel{Label: "hook", URL: h.url("t")})})
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	gate := notify.NewGate(d, func() time.Time { return now })
	for i := range 10 {
		gate.Notify(notify.Failure(anna, fmt.Sprintf("failure %d", i), ""))
		now = now.Add(40 * time.Minute)
	}
	gate.Notify(notify.Done(anna, notify.Run{Sent: 1, Size: 1, Took: time.Second, Via: notify.USB}))
	gate.Notify(notify.Failure(anna, "failure after success", ""))
	// A sentinel after them: the lane is ordered, so once it arrives nothing else is on its way.
	gate.Notify(notify.Passcode(anna))
	waitFor(t, 10*time.Second, "the sentinel", func() bool {
		m := h.messages()
		return len(m) > 0 && strings.Contains(m[len(m)-1]["title"], "passcode")
	})
	if n := len(h.messages()); n != 5 {
		t.Fatalf("%d messages reached the channel, want 4 + the sentinel", n)
	}
	var bodies []string
	for _, m := range h.messages() {
		bodies = append(bodies, m["message"])
	}
	want := []string{"failure 0.", "failure 2.", "completed", "failure after success."}
	for i, w := range want {
		if !strings.Contains(bodies[i], w) && !(w == "completed" && strings.Contains(bodies[i], "over USB")) {
			t.Fatalf("messages = %q, want %q", bodies, want)
		}
	}
}
