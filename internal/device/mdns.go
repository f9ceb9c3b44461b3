package device

import (
	"context"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/mdns"
)

// Built-in mDNS browsing for _apple-mobdev2._tcp (protocol.md §9).
//
// Library: github.com/hashicorp/mdns v1.0.7. It answers and browses over IPv4 and IPv6,
// works on a loopback-only network namespace (multicast on, a 224.0.0.0/4 route), parses
// with miekg/dns (already in the module graph through go-ios) and lets the caller pick the
// interface. Its client is one-shot (one query, answers for Timeout), so browsing is done
// in short rounds; leaving is detected by the heartbeat, which is faster and surer than
// waiting for records to expire. grandcat/zeroconf (also in the graph) is unmaintained
// since 2020; a browser of our own would duplicate DNS message code for no gain.

const mdnsService = "_apple-mobdev2._tcp"

// announcement is one device advert: instance "<wifi-mac>@<ipv6>", and where lockdownd is.
type announcement struct {
	Instance string // unescaped instance name
	MAC      string // lower-case Wi-Fi address from the instance name ("" if absent)
	Addr     string // host:port of lockdownd
}

// parseAnnouncement turns a hashicorp/mdns entry into an announcement; false if it is not a
// usable device advert (no address or port, foreign service).
func parseAnnouncement(e *mdns.ServiceEntry) (announcement, bool) {
	name := unescapeDNS(e.Name)
	inst, ok := strings.CutSuffix(name, "."+mdnsService+".local.")
	if !ok || inst == "" || e.Port <= 0 || e.Port > 65535 {
		return announcement{}, false
	}
	// Only addresses a device on this link can have: an advert pointing elsewhere would
	// make us offer pair records (HostIDs) to a host out on the internet.
	var host string
	switch {
	case e.AddrV4 != nil && onLink(e.AddrV4):
		host = e.AddrV4.String()
	case e.AddrV6IPAddr != nil && onLink(e.AddrV6IPAddr.IP):
		host = e.AddrV6IPAddr.String()
	default:
		return announcement{}, false
	}
	a := announcement{Instance: inst, Addr: net.JoinHostPort(host, strconv.Itoa(e.Port))}
	if mac, _, ok := strings.Cut(inst, "@"); ok {
		if hw, err := net.ParseMAC(mac); err == nil {
			a.MAC = hw.String()
		}
	}
	return a, true
}

// onLink reports whether ip is an address of the local network: private (RFC 1918, ULA),
// link-local or loopback.
func onLink(ip net.IP) bool {
	return ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLoopback()
}

// unescapeDNS undoes the presentation-format escapes of a DNS name (\@, \., \DDD).
func unescapeDNS(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n, _ := strconv.Atoi(s[i+1 : i+4])
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// browse queries in rounds of length round, a new round every `every`, until ctx ends,
// and delivers every advert heard (repeatedly: callers deduplicate). The goroutine is the
// Host's (Close waits for it); it ends within one round of ctx ending, because
// hashicorp/mdns finishes a query only at its timeout.
func (h *Host) browse(ctx context.Context, every, round time.Duration) <-chan announcement {
	out := make(chan announcement, 16)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(h.ctx, cancel) // Close ends browsing too
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		for ctx.Err() == nil {
			start := time.Now()
			h.browseRound(ctx, round, out)
			select {
			case <-ctx.Done():
			case <-time.After(every - time.Since(start)):
			}
		}
	}()
	return out
}

// browseRound sends one query and delivers adverts to found until round ends.
func (h *Host) browseRound(ctx context.Context, round time.Duration, found chan<- announcement) {
	var ifi *net.Interface
	if h.cfg.Interface != "" {
		var err error
		if ifi, err = net.InterfaceByName(h.cfg.Interface); err != nil {
			h.log.Warn("mDNS interface", "err", err)
			return
		}
	}
	entries := make(chan *mdns.ServiceEntry, 64)
	go func() {
		defer close(entries)
		err := mdns.QueryContext(ctx, &mdns.QueryParam{
			Service: mdnsService, Domain: "local", Timeout: round, Interface: ifi,
			Entries: entries, Logger: log.New(io.Discard, "", 0),
		})
		if err != nil && ctx.Err() == nil {
			h.log.Debug("mDNS query", "err", err)
		}
	}()
	for e := range entries {
		if a, ok := parseAnnouncement(e); ok {
			select {
			case found <- a:
			case <-ctx.Done():
				// Drain so the query goroutine's non-blocking sends never matter.
			}
		}
	}
}
