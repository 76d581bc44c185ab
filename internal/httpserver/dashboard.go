package httpserver

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// The dashboard is server-rendered HTML: html/template escapes everything
// (task args and error text are attacker-controlled), pages work without
// JavaScript, and a small script only swaps in fragments the server pushes
// over SSE. Assets are embedded, so running ebb needs no front-end build.
//
//go:embed web/templates/*.html web/static/*
var webFS embed.FS

// pageTemplates parses on first use, not at package init: every ebb
// process links this package, and `ebb worker` never renders a page.
var pageTemplates = sync.OnceValue(func() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(templateFuncs).ParseFS(webFS, "web/templates/layout.html", "web/templates/fragments*.html"))
	pages := map[string]*template.Template{}
	names, _ := fs.Glob(webFS, "web/templates/page_*.html")
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "web/templates/page_"), ".html")
		pages[name] = template.Must(template.Must(base.Clone()).ParseFS(webFS, n))
	}
	return pages
})

// fragments renders live fragments outside a page.
func fragments() *template.Template { return pageTemplates()["overview"] }

var templateFuncs = template.FuncMap{
	"ago":      ago,
	"clock":    clock,
	"dur":      fmtDuration,
	"pretty":   prettyJSON,
	"rate":     func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"num":      fmtInt,
	"terminal": func(st ebbtype.State) bool { return st.Terminal() },
	"retryable": func(st ebbtype.State) bool {
		return st == ebbtype.StateScheduled || st == ebbtype.StateRetrying || st == ebbtype.StateDead
	},
	"query": func(kv ...string) template.URL {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				v.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(v.Encode())
	},
	// The chart and sparkline are views for the "chart" and "sparkline"
	// templates, so their markup is escaped like every other page's.
	"chartView": newChartView,
	"lastError": func(t *ebbtype.TaskInfo) string {
		if len(t.Errors) == 0 {
			return t.Malformed
		}
		return t.Errors[len(t.Errors)-1].Error
	},
	"sparkView": newSparkView,
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + fmtDuration(-d)
	}
	return fmtDuration(d) + " ago"
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// fmtDuration rounds to what a person reads at a glance.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

func fmtInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + fmtInt(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// prettyJSON indents JSON for display; anything else is shown as it is
// (escaped by the template either way).
func prettyJSON(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return unescapeHTMLInJSON(out.String())
}

// unescapeHTMLInJSON turns the \u003c, \u003e and \u0026 escapes Go's
// encoder writes for <, > and & back into the characters, so people read
// what the task carries; the template escapes them for HTML. Every
// backslash in JSON starts an escape, so escapes are read pairwise and an
// escaped backslash is never mistaken for the start of one.
func unescapeHTMLInJSON(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == 'u' && i+6 <= len(s) {
			switch s[i+2 : i+6] {
			case "003c", "003C":
				b.WriteByte('<')
				i += 5
				continue
			case "003e", "003E":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.WriteString(s[i : i+2])
		i++
	}
	return b.String()
}

// page is what every page template gets.
type page struct {
	Title    string
	Nav      string
	CSRF     string
	ReadOnly bool
	Flash    string
	Leader   string
	Leading  bool
	Data     any
	// Live is the SSE URL that keeps the page's fragments fresh; "" for
	// static pages.
	Live string
	// Status is the HTTP status to answer with; 0 means 200.
	Status int
}

const flashCookie = "ebb_flash"

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	p.CSRF = csrfToken(w, r)
	p.ReadOnly = s.cfg.ReadOnly
	p.Leading = s.cp.Leading()
	if l := s.cp.Leader(); l != nil {
		p.Leader = l.LeaderID
	}
	if c, err := r.Cookie(flashCookie); err == nil {
		if v, err := url.QueryUnescape(c.Value); err == nil {
			p.Flash = v
		}
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1})
	}
	s.writePage(w, name, p)
}

// writePage renders a whole page into memory first, so a template error
// becomes a clean 500 rather than half a page.
func (s *Server) writePage(w http.ResponseWriter, name string, p page) {
	var buf bytes.Buffer
	if err := pageTemplates()[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.logger.Error("dashboard template failed", "page", name, "error", err)
		http.Error(w, "rendering failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(cmp.Or(p.Status, http.StatusOK))
	_, _ = buf.WriteTo(w)
}

// redirectFlash ends a form action: back to a page (Post/Redirect/Get), with
// a one-time message in a cookie rather than in the URL, so a crafted link
// cannot put words in the dashboard's mouth.
func redirectFlash(w http.ResponseWriter, r *http.Request, to, msg string) {
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(msg), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 60})
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// securityHeaders: no inline scripts, no framing, no sniffing. The one
// script is our own file; styles are our own file too.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) dashboardRoutes(mux *router) {
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.pageOverview)
	mux.HandleFunc("GET /pools/{name}", s.pagePool)
	mux.HandleFunc("GET /tasks", s.pageTasks)
	mux.HandleFunc("GET /tasks/{id}", s.pageTask)
	mux.HandleFunc("POST /tasks/{id}/{action}", s.writable(withCSRF(s.formTaskAction)))
	mux.HandleFunc("GET /queues/{queue}/dead", s.pageDead)
	mux.HandleFunc("POST /queues/{queue}/dead/{action}", s.writable(withCSRF(s.formDeadAction)))
	mux.HandleFunc("GET /workers", s.pageWorkers)
	mux.HandleFunc("POST /workers/{id}/drain", s.writable(withCSRF(s.formWorkerDrain)))
	mux.HandleFunc("GET /schedules", s.pageSchedules)
	mux.HandleFunc("POST /schedules/{name}/{action}", s.writable(withCSRF(s.formScheduleAction)))
	mux.HandleFunc("GET /live/{view}", s.handleLive)
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) { s.renderLogin(w, r, http.StatusOK, "") })
	mux.HandleFunc("POST /login", withCSRF(s.formLogin))
	mux.HandleFunc("POST /logout", withCSRF(s.formLogout))
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	next := r.URL.RequestURI()
	if r.URL.Path == "/login" {
		next = r.URL.Query().Get("next")
	}
	s.writePage(w, "login", page{Title: "Sign in", CSRF: csrfToken(w, r), Flash: msg, Status: code,
		Data: map[string]any{"Next": safeNext(next), "Needed": s.needsAuth()}})
}

// safeNext keeps post-login redirects on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (s *Server) formLogin(w http.ResponseWriter, r *http.Request) {
	token := string(s.cfg.Token)
	if !TokenOK("Bearer "+r.PostFormValue("token"), token) {
		s.renderLogin(w, r, http.StatusUnauthorized, "That token is not right.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sessionValue(token), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int((7 * 24 * time.Hour).Seconds())})
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (s *Server) formLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// actionFailed turns an action's error into a flash message.
func actionFailed(what string, err error) string {
	return fmt.Sprintf("%s failed: %v", what, err)
}
