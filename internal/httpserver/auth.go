package httpserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
)

// Cookies the dashboard sets. Both are HttpOnly and SameSite=Strict: no
// script reads them and no other site's page sends them.
const (
	// sessionCookie holds proof of the token after a dashboard login: an HMAC
	// of a fixed label keyed by the token, so it never contains the token
	// and every session ends when the token is rotated.
	sessionCookie = "ebb_session"
	// csrfCookie holds a random value each dashboard form must echo
	// (double-submit): another site can make the browser send the cookie's
	// request but cannot read the value to put in the form.
	csrfCookie = "ebb_csrf"
	csrfField  = "csrf"
)

// RequiresToken reports whether a listen address needs a bearer token: any
// address but loopback.
func RequiresToken(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// TokenOK checks an Authorization header against the configured token in
// constant time. An empty configured token accepts nothing.
func TokenOK(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// basicOK accepts HTTP basic auth whose password is the token (the user name
// is free), so tools and browsers that only speak basic auth get in too.
func basicOK(r *http.Request, token string) bool {
	_, pass, ok := r.BasicAuth()
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(pass), []byte(token)) == 1
}

func sessionValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("ebb dashboard session v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func sessionOK(r *http.Request, token string) bool {
	c, err := r.Cookie(sessionCookie)
	return err == nil && token != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(sessionValue(token))) == 1
}

// authenticated reports whether a request carries the token in any accepted
// form: bearer header, basic auth, or a dashboard session cookie.
func (s *Server) authenticated(r *http.Request) bool {
	token := string(s.cfg.Token)
	return TokenOK(r.Header.Get("Authorization"), token) || basicOK(r, token) || sessionOK(r, token)
}

// needsAuth reports whether this server guards its routes: whenever it
// listens beyond loopback or a token is configured.
func (s *Server) needsAuth() bool {
	return s.cfg.Token != "" || RequiresToken(s.cfg.Listen)
}

// publicPath lists what answers without credentials: the liveness probe,
// the login page and the static assets it needs (public code, no data).
func publicPath(p string) bool {
	return p == "/healthz" || p == "/login" || strings.HasPrefix(p, "/static/")
}

// authorize guards every route but the public ones. Browsers asking for a
// page get the login form (with status 401); API clients a JSON error.
func (s *Server) authorize(next http.Handler) http.Handler {
	need := s.needsAuth()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !need || publicPath(r.URL.Path) || s.authenticated(r) {
			next.ServeHTTP(w, r)
			return
		}
		if wantsHTML(r) {
			s.renderLogin(w, r, http.StatusUnauthorized, "")
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ebb"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token: send Authorization: Bearer <token> (server.token or EBB_TOKEN)")
	})
}

func wantsHTML(r *http.Request) bool {
	return !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/metrics" &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}

// csrfToken returns the browser's CSRF value, setting the cookie on first
// sight.
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 64 {
		return c.Value
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	v := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	// Later reads in this request (the page's forms) see the new value.
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: v})
	return v
}

// csrfOK checks a dashboard form's echo of the CSRF cookie.
func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(c.Value)) == 1
}

// withCSRF guards a dashboard form action.
func withCSRF(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if !csrfOK(r) {
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}
