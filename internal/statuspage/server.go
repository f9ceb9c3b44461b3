package statuspage

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"snapback/internal/atomicfile"
)

// Options configure the handler.
type Options struct {
	Source  Source
	Actions Actions
	// Token authorises actions (and, with Private, every request). It must not be empty.
	Token string
	// Private requires the token for reads too: set it whenever the server listens on an
	// address other than loopback.
	Private bool
	Logger  *slog.Logger
}

// cookieName holds the token in the browser after the user opened the link with ?token=.
const cookieName = "snapback_token"

// Handler returns the status page, /api/status, /metrics and the action endpoints.
func Handler(o Options) (*Server, error) {
	if o.Token == "" {
		return nil, errors.New("status page: empty token")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(newCollector(o.Source)); err != nil {
		return nil, err
	}
	s := &server{o: o, csrf: http.NewCrossOriginProtection(), logins: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.read(s.page))
	mux.HandleFunc("GET /api/status", s.read(s.status))
	mux.Handle("GET /metrics", s.read(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("POST /devices/{udid}/{action}", s.action)
	return &Server{h: securityHeaders(mux), s: s}, nil
}

// Server is the status page's http.Handler.
type Server struct {
	h http.Handler
	s *server
}

func (sv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { sv.h.ServeHTTP(w, r) }

// loginTTL is how long a one-time login link works.
const loginTTL = 2 * time.Minute

// LoginURL returns base (http://host:port) with a one-time code that, opened within two
// minutes, stores the token in the browser. The tray opens it: a browser is started with the
// address as an argument, which other local users can see, so the token itself never goes there.
func (sv *Server) LoginURL(base string) string {
	b := make([]byte, 16)
	rand.Read(b)
	code := hex.EncodeToString(b)
	sv.s.mu.Lock()
	defer sv.s.mu.Unlock()
	now := time.Now()
	for c, exp := range sv.s.logins {
		if now.After(exp) {
			delete(sv.s.logins, c)
		}
	}
	sv.s.logins[code] = now.Add(loginTTL)
	return base + "/?login=" + code
}

type server struct {
	o    Options
	csrf *http.CrossOriginProtection

	mu     sync.Mutex
	logins map[string]time.Time // one-time login codes and their expiry
}

// redeem reports whether code is a live one-time login code, and uses it up.
func (s *server) redeem(code string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.logins[code]
	delete(s.logins, code)
	return ok && time.Now().Before(exp)
}

// authorised reports whether r carries the token: Authorization: Bearer, the cookie set by
// opening the link, or a form field.
func (s *server) authorised(r *http.Request) bool {
	var got string
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		got = strings.TrimPrefix(h, "Bearer ")
	} else if c, err := r.Cookie(cookieName); err == nil {
		got = c.Value
	} else if r.Method == http.MethodPost {
		got = r.PostFormValue("token")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.o.Token)) == 1
}

// read guards a GET: opening any page with ?token=T stores the token in a cookie and
// redirects to the same page without it (so it leaves the address bar and history).
func (s *server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, code := r.URL.Query().Get("token"), r.URL.Query().Get("login")
		if t != "" || code != "" {
			if code != "" && !s.redeem(code) {
				http.Error(w, "this login link has expired or was used; open the status page from the tray again, or use `snapback http token --url`", http.StatusForbidden)
				return
			}
			if t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.o.Token)) != 1 {
				http.Error(w, "wrong token; `snapback http token` prints the right one", http.StatusForbidden)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.o.Token, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, MaxAge: 400 * 24 * 3600})
			u := *r.URL
			q := u.Query()
			q.Del("token")
			q.Del("login")
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		if s.o.Private && !s.authorised(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="snapback"`)
			http.Error(w, "this status page needs its token: open the address `snapback http token --url` prints", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.o.Source.View(r.Context()))
}

func (s *server) action(w http.ResponseWriter, r *http.Request) {
	if err := s.csrf.Check(r); err != nil {
		s.o.Logger.Warn("status page: cross-origin action refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
		s.fail(w, r, http.StatusForbidden, "Refused: this action did not come from the status page itself.")
		return
	}
	if !s.authorised(r) {
		s.fail(w, r, http.StatusForbidden, "Refused: actions need the token. Open the address `snapback http token --url` prints, then try again.")
		return
	}
	udid := r.PathValue("udid")
	var err error
	switch r.PathValue("action") {
	case "backup":
		err = s.o.Actions.BackUpNow(r.Context(), udid)
	case "cancel":
		err = s.o.Actions.Cancel(r.Context(), udid)
	case "approve":
		err = s.o.Actions.ApproveDeletion(r.Context(), udid)
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusConflict, err.Error())
		return
	}
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"ok":true}`)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	errorTmpl.Execute(w, msg)
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// securityHeaders keeps the page out of frames and from loading anything foreign.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// Serve listens on listen and serves h until ctx ends, then shuts down gracefully. It
// returns the listen error at once, so a taken port is reported to the user.
func Serve(ctx context.Context, listen string, h http.Handler, log *slog.Logger, ready func(addr string)) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("status page: %w; fix: choose a free port in http.listen", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if ready != nil {
		ready(l.Addr().String())
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-done
	return nil
}

// TokenFile is where the token is kept: a file in the state folder only the user can read.
const TokenFile = "http-token"

// LoadOrCreateToken returns the token stored at path, creating a random one (atomically,
// mode 0600) when there is none. A file other users can read is refused, not used.
func LoadOrCreateToken(path string) (string, error) {
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return "", err
		}
		if fi.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" { // Windows: ACLs, no POSIX bits
			return "", fmt.Errorf("%s can be read by other users (mode %04o); fix: chmod 600 %s, or delete it for a new token", path, fi.Mode().Perm(), path)
		}
		buf := make([]byte, 256)
		n, _ := f.Read(buf)
		if t := strings.TrimSpace(string(buf[:n])); len(t) >= 32 {
			return t, nil
		}
		return "", fmt.Errorf("%s does not hold a token; fix: delete it and run `snapback http token` for a new one", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 32)
	rand.Read(b)
	t := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}
