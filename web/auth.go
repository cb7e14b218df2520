package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// AuthConfig says who may see the dashboard and who may act on the fleet.
// With nothing set, every request is an anonymous admin: the default
// listen address is 127.0.0.1, for one operator on their own machine.
type AuthConfig struct {
	// Token, when set, is required as "Authorization: Bearer <token>" (or
	// the flotilla_token cookie that /login sets). It grants admin rights
	// unless AdminToken is also set, in which case it is read-only.
	Token string
	// AdminToken grants admin rights.
	AdminToken string
	// UserHeader names a header set by a trusted authenticating proxy in
	// front (oauth2-proxy: X-Forwarded-User or X-Auth-Request-User). Only
	// use it when nothing but the proxy can reach the dashboard.
	UserHeader string
	// GroupsHeader names the proxy's comma-separated groups header
	// (X-Forwarded-Groups).
	GroupsHeader string
	// AdminUsers and AdminGroups are granted admin rights when UserHeader
	// is used. When both are empty, every proxied user is an admin.
	AdminUsers  []string
	AdminGroups []string
}

// Enabled reports whether requests must authenticate.
func (a AuthConfig) Enabled() bool {
	return a.Token != "" || a.AdminToken != "" || a.UserHeader != ""
}

// Identity is who made a request.
type Identity struct {
	User  string
	Admin bool
}

const (
	tokenCookie = "flotilla_token"
	csrfCookie  = "flotilla_csrf"
	csrfHeader  = "X-CSRF-Token"
	csrfField   = "csrf"
)

// authenticate returns the caller's identity, or ok=false.
func (a AuthConfig) authenticate(r *http.Request) (Identity, bool) {
	if !a.Enabled() {
		return Identity{User: "anonymous", Admin: true}, true
	}
	if tok := bearer(r); tok != "" {
		switch {
		case a.AdminToken != "" && equal(tok, a.AdminToken):
			return Identity{User: "admin-token", Admin: true}, true
		case a.Token != "" && equal(tok, a.Token):
			return Identity{User: "token", Admin: a.AdminToken == ""}, true
		}
	}
	if a.UserHeader != "" {
		if u := strings.TrimSpace(r.Header.Get(a.UserHeader)); u != "" {
			admin := len(a.AdminUsers) == 0 && len(a.AdminGroups) == 0 || slices.Contains(a.AdminUsers, u)
			if !admin && a.GroupsHeader != "" {
				for _, g := range strings.Split(r.Header.Get(a.GroupsHeader), ",") {
					if slices.Contains(a.AdminGroups, strings.TrimSpace(g)) {
						admin = true
						break
					}
				}
			}
			return Identity{User: u, Admin: admin}, true
		}
	}
	return Identity{}, false
}

func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		return c.Value
	}
	return ""
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

type ctxKey int

const reqKey ctxKey = 0

// reqInfo travels in the request context from the middleware to handlers.
type reqInfo struct {
	Identity
	CSRF string // the token pages embed; empty when there is no cookie
}

func info(ctx context.Context) reqInfo {
	v, _ := ctx.Value(reqKey).(reqInfo)
	return v
}

// csrf implements signed double-submit tokens: a random cookie per
// browser, and the token HMAC(key, cookie) in every form and in the
// X-CSRF-Token header HTMX sends. Another site can make the browser send
// the cookie but can neither read it nor compute the token.
type csrf struct{ key []byte }

func newCSRF() csrf {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return csrf{key: k}
}

func (c csrf) token(cookie string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ensureCookie returns the request's CSRF cookie value, setting a fresh one
// on the response when there is none.
func (c csrf) ensureCookie(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 64 {
		return ck.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := hex.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	// Later code in this request reads the cookie as if it had come in.
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: v})
	return v
}

// check verifies a state-changing request; it returns why it fails, or "".
func (c csrf) check(r *http.Request) string {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return "cross-origin request from " + o
		}
	}
	ck, err := r.Cookie(csrfCookie)
	if err != nil || ck.Value == "" {
		return "no CSRF cookie: reload the page and try again"
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	if got == "" {
		return "missing CSRF token"
	}
	if !equal(got, c.token(ck.Value)) {
		return "CSRF token does not match: reload the page and try again"
	}
	return ""
}
