package statuspage

import (
	"fmt"
	"html/template"
	"net/http"
	"snapback/internal/humanize"
	"time"
)

func (s *server) page(w http.ResponseWriter, r *http.Request) {
	v := s.o.Source.View(r.Context())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// No JavaScript: the page reloads itself, often while a backup runs.
	refresh := 30
	for _, d := range v.Devices {
		if d.Busy {
			refresh = 5
		}
	}
	if err := pageTmpl.Execute(w, pageData{View: v, Authorised: s.authorised(r), Refresh: refresh}); err != nil {
		s.o.Logger.Warn("status page: render failed", "err", err)
	}
}

type pageData struct {
	View
	Authorised bool // the browser holds the token: the buttons will work
	Refresh    int  // seconds
}

var funcs = template.FuncMap{
	"bytes": humanize.Bytes,
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return FormatAgo(now.Sub(t))
	},
	"until": func(now, t time.Time) string {
		d := t.Sub(now)
		if d <= time.Minute {
			return "now"
		}
		return "in " + FormatAgo(d)
	},
	"when": func(t time.Time) string { return t.Local().Format("Mon 2 Jan 15:04") },
	"iso":  func(t time.Time) string { return t.Format(time.RFC3339) },
}

var pageTmpl = template.Must(template.New("page").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>Snapback</title>
<style>
body{font:16px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#1c1c1e}
header{background:#1c1c1e;color:#fff;padding:.8em 1em}header h1{margin:0;font-size:1.2em}
main{max-width:46em;margin:0 auto;padding:.5em}
section.dev{background:#fff;border-radius:12px;padding:1em;margin:.8em 0;box-shadow:0 1px 3px #0002}
h2{margin:0 0 .3em;font-size:1.15em}.muted{color:#6e6e73}.bad{color:#c00}.ok{color:#1a7f37}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em .8em;margin:.5em 0}dt{color:#6e6e73}dd{margin:0}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25em .4em;border-top:1px solid #eee}td.n{text-align:right}
progress{width:100%}form{display:inline}button{font-size:1em;padding:.5em 1em;margin:.3em .3em 0 0;border-radius:8px;border:1px solid #888;background:#fff}
.warn{background:#fff4e5;border-left:4px solid #f0a000;padding:.5em .8em;margin:.5em 0}
</style></head><body>
<header><h1>Snapback</h1><span class="muted">{{when .Now}}{{if .Paused}} · automatic backups paused{{end}}</span></header>
<main>
{{if .SettingsProblem}}<p class="warn">Settings file problem (running on the last good settings): {{.SettingsProblem}}</p>{{end}}
{{if not .Authorised}}<p class="muted">Read-only: to use the buttons, open the address <code>snapback http token --url</code> prints.</p>{{end}}
{{range .Devices}}{{$now := $.Now}}{{$udid := .UDID}}
<section class="dev" id="dev-{{.UDID}}">
<h2>{{.Name}}</h2>
<dl>
<dt>Connection</dt><dd>{{if .Connected}}<span class="ok">connected</span>{{with .Transport}} over {{.}}{{end}}{{else}}<span class="muted">not connected</span>{{end}}</dd>
<dt>Status</dt><dd>{{.State}}{{if .Overdue}} <span class="bad">(overdue)</span>{{end}}</dd>
<dt>Last backup</dt><dd class="last-backup">{{with .LastBackup}}<time datetime="{{iso .Time}}">{{when .Time}}</time> ({{ago $now .Time}} ago) · {{bytes .Size}}{{with .IOSVersion}} · iOS {{.}}{{end}}{{if .Encrypted}} · encrypted{{end}}{{else}}none yet{{end}}</dd>
<dt>Next</dt><dd>{{if .Busy}}running now{{else}}{{with .NextWhy}}{{.}}{{end}}{{if not .NextDue.IsZero}} · checks again {{until $now .NextDue}}{{end}}{{end}}</dd>
</dl>
{{with .Progress}}<p>{{.Phase}}{{if ge .Percent 0}} · {{.Percent}} %{{end}} · {{bytes .Bytes}} · {{.Files}} files</p>
{{if ge .Percent 0}}<progress max="100" value="{{.Percent}}">{{.Percent}} %</progress>{{else}}<progress></progress>{{end}}{{end}}
<div>
{{if .Busy}}<form method="post" action="/devices/{{.UDID}}/cancel"><button>Cancel</button></form>
{{else}}<form method="post" action="/devices/{{.UDID}}/backup"><button>Back Up Now</button></form>{{end}}
{{with .PendingDeletion}}<form method="post" action="/devices/{{$udid}}/approve"><button>Allow deleting {{.Snapshots}} old snapshots ({{bytes .Bytes}})</button></form>{{end}}
</div>
{{if .Failures}}<h3>Recent failures</h3><ul class="failures">{{range .Failures}}<li><time datetime="{{iso .Time}}">{{when .Time}}</time>: {{.Message}}{{with .Remedy}} <strong>What to do:</strong> {{.}}{{end}}</li>{{end}}</ul>{{end}}
<h3>Snapshots{{if .Snapshots}} <span class="muted">({{len .Snapshots}}, {{bytes .SnapshotsSize}})</span>{{end}}</h3>
{{if .Snapshots}}<table class="snapshots"><tr><th>Date</th><th class="n">Size</th><th></th></tr>
{{range .Snapshots}}<tr><td><time datetime="{{iso .Time}}">{{when .Time}}</time></td><td class="n">{{bytes .Size}}</td><td>{{if .Archived}}archived{{end}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No earlier snapshots yet.</p>{{end}}
</section>
{{else}}<section class="dev"><p>No devices yet. Connect an iPhone or iPad with USB and tap “Trust”.</p></section>{{end}}
{{if .Alerts}}<p class="muted">Alerts go to: {{range $i, $a := .Alerts}}{{if $i}}, {{end}}{{$a}}{{end}}</p>{{end}}
<p class="muted"><a href="/api/status">JSON</a> · <a href="/metrics">metrics</a></p>
</main></body></html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Snapback</title></head>
<body style="font:16px/1.4 system-ui,sans-serif;margin:1em"><p>{{.}}</p><p><a href="/">Back to the status page</a></p></body></html>
`))

// FormatAgo writes a span coarsely: "40 s", "12 min", "5 h", "3 days".
func FormatAgo(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
}
