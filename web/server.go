package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// DefaultAddr is where the dashboard listens unless told otherwise.
const DefaultAddr = "127.0.0.1:18080"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Server.
type Options struct {
	Service FleetService
	Auth    AuthConfig
	Logger  *slog.Logger
	// Title is shown in the header ("Flotilla", "Flotilla (mock)").
	Title string
}

// Server is the dashboard's http.Handler.
type Server struct {
	svc   FleetService
	auth  AuthConfig
	log   *slog.Logger
	title string
	csrf  csrf
	pages map[string]*template.Template
	frags *template.Template
	mux   *http.ServeMux
}

// NewServer parses the embedded templates and wires the routes.
func NewServer(opts Options) (*Server, error) {
	if opts.Service == nil {
		return nil, errors.New("web: Options.Service is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Title == "" {
		opts.Title = "Flotilla"
	}
	s := &Server{svc: opts.Service, auth: opts.Auth, log: opts.Logger, title: opts.Title,
		csrf: newCSRF(), pages: map[string]*template.Template{}}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) parseTemplates() error {
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/fragments.html")
	if err != nil {
		return fmt.Errorf("parse templates: %w", err)
	}
	s.frags = base
	names, err := fs.Glob(templateFS, "templates/page_*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return fmt.Errorf("parse %s: %w", n, err)
		}
		key := strings.TrimSuffix(strings.TrimPrefix(n, "templates/page_"), ".html")
		s.pages[key] = t
	}
	return nil
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.FileServerFS(static)
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(fileServer)))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)

	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /devices", s.devices)
	mux.HandleFunc("GET /devices/{id}", s.device)
	mux.HandleFunc("POST /devices/{id}/blacklist", s.admin(s.blacklist(true)))
	mux.HandleFunc("POST /devices/{id}/unblacklist", s.admin(s.blacklist(false)))
	mux.HandleFunc("POST /devices/{id}/ping", s.ping)
	mux.HandleFunc("POST /devices/{id}/logs", s.logs)
	mux.HandleFunc("GET /deployments", s.deployments)
	mux.HandleFunc("GET /deployments/{name}", s.deployment)
	mux.HandleFunc("GET /rollouts", s.rollouts)
	mux.HandleFunc("GET /rollouts/{name}", s.rollout)
	mux.HandleFunc("POST /rollouts/{name}/pause", s.admin(s.pause(true)))
	mux.HandleFunc("POST /rollouts/{name}/resume", s.admin(s.pause(false)))
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := s.mux.Handler(probe); m != r.Method && pattern != "/" {
				w.Header().Set("Allow", m)
				s.fail(w, r, http.StatusMethodNotAllowed, "Method not allowed", r.URL.Path+" only answers "+m+".")
				return
			}
		}
		s.fail(w, r, http.StatusNotFound, "Page not found", "There is no page at "+r.URL.Path+".")
	})
	s.mux = mux
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP applies the security headers, authentication and the CSRF
// check, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")

	public := strings.HasPrefix(r.URL.Path, "/static/") || r.URL.Path == "/healthz" || r.URL.Path == "/login" || r.URL.Path == "/favicon.ico"
	id, ok := s.auth.authenticate(r)
	if !ok && !public {
		if r.Method == http.MethodGet && r.Header.Get("HX-Request") == "" && s.auth.Token+s.auth.AdminToken != "" {
			http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		s.fail(w, r, http.StatusUnauthorized, "Sign in required",
			"This dashboard needs a bearer token or a sign-in through the authenticating proxy.")
		return
	}
	ri := reqInfo{Identity: id}
	if r.Method == http.MethodPost {
		if why := s.csrf.check(r); why != "" {
			s.fail(w, r, http.StatusForbidden, "Request refused", why)
			return
		}
		ri.CSRF = s.csrf.token(s.csrf.ensureCookie(w, r))
	} else if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/static/") {
		ri.CSRF = s.csrf.token(s.csrf.ensureCookie(w, r))
	}
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), reqKey, ri)))
}

// admin wraps a handler that changes the fleet.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !info(r.Context()).Admin {
			s.fail(w, r, http.StatusForbidden, "Not allowed", "Only admins may change the fleet; you are signed in as "+info(r.Context()).User+".")
			return
		}
		h(w, r)
	}
}

// ---- rendering ------------------------------------------------------------

// page is what every full page template gets.
type page struct {
	Title  string
	App    string
	Nav    string
	Req    reqInfo
	Status int
	Data   any
}

// frag is what every fragment template gets.
type frag struct {
	Req  reqInfo
	AsOf time.Time
	Item any
	// Fragment is "row" or "detail": where an action's answer goes.
	Fragment string
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, nav, title string, data any) {
	t, ok := s.pages[name]
	if !ok {
		s.log.Error("no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	p := page{Title: title, App: s.title, Nav: nav, Req: info(r.Context()), Status: status, Data: data}
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error rendering "+name, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Pages carry the CSRF token and live fleet state: never cache them.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) renderFrag(w http.ResponseWriter, r *http.Request, status int, name string, f frag) {
	f.Req = info(r.Context())
	var buf bytes.Buffer
	if err := s.frags.ExecuteTemplate(&buf, name, f); err != nil {
		s.log.Error("render fragment", "fragment", name, "err", err)
		http.Error(w, "internal error rendering "+name, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Pages carry the CSRF token and live fleet state: never cache them.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type failure struct {
	Status int
	Title  string
	Detail string
}

// fail answers an error: a fragment for HTMX (app.js shows it in the flash
// area), a full page otherwise.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	f := failure{Status: status, Title: title, Detail: detail}
	if status >= 500 && status != http.StatusNotImplemented {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "detail", detail)
	} else {
		s.log.Debug("request refused", "method", r.Method, "url", r.URL.String(), "status", status, "detail", detail)
	}
	if r.Header.Get("HX-Request") != "" {
		s.renderFrag(w, r, status, "flash", frag{Item: f})
		return
	}
	s.render(w, r, status, "error", "", title, f)
}

// serviceErr maps a FleetService error onto a response.
func (s *Server) serviceErr(w http.ResponseWriter, r *http.Request, err error) {
	var ce *core.CommandError
	switch {
	case errors.Is(err, ErrNotFound):
		s.fail(w, r, http.StatusNotFound, "Not found", capitalize(err.Error()))
	case errors.Is(err, ErrUnavailable):
		s.fail(w, r, http.StatusNotImplemented, "Not available here", capitalize(strings.TrimSuffix(err.Error(), ": "+ErrUnavailable.Error())))
	case errors.Is(err, ErrInvalid):
		s.fail(w, r, http.StatusBadRequest, "Bad request", capitalize(strings.TrimSuffix(err.Error(), ": "+ErrInvalid.Error())))
	case errors.As(err, &ce) && ce.Code == core.ErrCodeBadRequest:
		s.fail(w, r, http.StatusBadRequest, "Bad request", err.Error())
	case errors.Is(err, context.Canceled):
		s.fail(w, r, 499, "Cancelled", "The request was cancelled.")
	default:
		s.fail(w, r, http.StatusBadGateway, "The fleet service failed", err.Error())
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// ---- pages ----------------------------------------------------------------

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	o, err := s.svc.Overview(r.Context())
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", "overview", "Fleet overview", o)
}

type devicesData struct {
	Query  DeviceQuery
	Label  string
	Page   DevicePage
	Phases []core.AgentUpgradePhase
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	q, err := ParseDeviceQuery(r.URL.Query())
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	p, err := s.svc.ListDevices(r.Context(), q)
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	d := devicesData{Query: q, Label: r.URL.Query().Get("label"), Page: p, Phases: FilterPhases}
	if r.Header.Get("HX-Request") != "" && r.Header.Get("HX-Target") == "device-table" {
		s.renderFrag(w, r, http.StatusOK, "device-table", frag{AsOf: p.AsOf, Item: d})
		return
	}
	s.render(w, r, http.StatusOK, "devices", "devices", "Devices", d)
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	d, err := s.svc.Device(r.Context(), r.PathValue("id"))
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "device", "devices", d.ID, frag{Req: info(r.Context()), AsOf: s.asOf(d), Item: d, Fragment: "detail"})
}

// asOf is the time relative ages are shown against.
func (s *Server) asOf(d Device) time.Time {
	if n, ok := s.svc.(interface{ Now() time.Time }); ok {
		return n.Now()
	}
	return time.Now()
}

func (s *Server) deployments(w http.ResponseWriter, r *http.Request) {
	ds, err := s.svc.Deployments(r.Context())
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "deployments", "deployments", "Deployments", ds)
}

func (s *Server) deployment(w http.ResponseWriter, r *http.Request) {
	d, err := s.svc.Deployment(r.Context(), r.PathValue("name"))
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "deployment", "deployments", d.Name, d)
}

func (s *Server) rollouts(w http.ResponseWriter, r *http.Request) {
	rs, err := s.svc.Rollouts(r.Context())
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "rollouts", "rollouts", "Agent rollouts", frag{Req: info(r.Context()), Item: rs})
}

func (s *Server) rollout(w http.ResponseWriter, r *http.Request) {
	d, err := s.svc.Rollout(r.Context(), r.PathValue("name"))
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "rollout", "rollouts", d.Name, frag{Req: info(r.Context()), Item: d, Fragment: "detail"})
}

// ---- actions --------------------------------------------------------------

// fragmentField reads the form's "fragment" field: which view the answer
// replaces. Empty means a plain form post: redirect back.
func fragmentField(r *http.Request) (string, bool) {
	switch f := r.PostFormValue("fragment"); f {
	case "", "row", "detail":
		return f, true
	default:
		return f, false
	}
}

func (s *Server) blacklist(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		fragment, ok := fragmentField(r)
		if !ok {
			s.fail(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("fragment %q: want row or detail", fragment))
			return
		}
		d, err := s.svc.SetBlacklisted(r.Context(), id, on)
		if err != nil {
			s.serviceErr(w, r, err)
			return
		}
		verb := "unblacklisted"
		if on {
			verb = "blacklisted"
		}
		s.log.Info("device "+verb, "device", id, "user", info(r.Context()).User)
		switch fragment {
		case "row":
			s.renderFrag(w, r, http.StatusOK, "device-row", frag{AsOf: s.asOf(d), Item: d, Fragment: "row"})
		case "detail":
			s.renderFrag(w, r, http.StatusOK, "device-detail", frag{AsOf: s.asOf(d), Item: d, Fragment: "detail"})
		default:
			http.Redirect(w, r, "/devices/"+pathEscape(id), http.StatusSeeOther)
		}
	}
}

func (s *Server) pause(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		fragment, ok := fragmentField(r)
		if !ok {
			s.fail(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("fragment %q: want row or detail", fragment))
			return
		}
		if _, err := s.svc.SetRolloutPaused(r.Context(), name, on); err != nil {
			s.serviceErr(w, r, err)
			return
		}
		s.log.Info("rollout paused", "rollout", name, "paused", on, "user", info(r.Context()).User)
		switch fragment {
		case "row", "detail":
			d, err := s.svc.Rollout(r.Context(), name)
			if err != nil {
				s.serviceErr(w, r, err)
				return
			}
			s.renderFrag(w, r, http.StatusOK, "rollout-"+fragment, frag{Item: d, Fragment: fragment})
		default:
			http.Redirect(w, r, "/rollouts/"+pathEscape(name), http.StatusSeeOther)
		}
	}
}

type cmdResult struct {
	Device string
	Verb   string
	Ping   *core.PingResult
	Logs   *core.LogsResult
	Error  string
	Code   string
}

func (s *Server) commandDone(w http.ResponseWriter, r *http.Request, res cmdResult, err error) {
	var ce *core.CommandError
	switch {
	case err == nil:
	case errors.As(err, &ce) && ce.Code != core.ErrCodeBadRequest:
		// The device answered (or failed to): a result, not a bad request.
		res.Error, res.Code = err.Error(), string(ce.Code)
	default:
		s.serviceErr(w, r, err)
		return
	}
	if r.Header.Get("HX-Request") != "" {
		s.renderFrag(w, r, http.StatusOK, "command-result", frag{Item: res})
		return
	}
	s.render(w, r, http.StatusOK, "result", "devices", res.Verb+" "+res.Device, res)
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	p, err := s.svc.Ping(ctx, id)
	res := cmdResult{Device: id, Verb: "ping"}
	if err == nil {
		res.Ping = &p
	}
	s.commandDone(w, r, res, err)
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	args := core.LogsArgs{Deployment: strings.TrimSpace(r.PostFormValue("deployment"))}
	if l := r.PostFormValue("lines"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			s.fail(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("lines %q: want a whole number of at least 1", l))
			return
		}
		args.Lines = n
	}
	if args.Deployment != "" {
		if err := core.ValidateDeploymentName(args.Deployment); err != nil {
			s.fail(w, r, http.StatusBadRequest, "Bad request", err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	l, err := s.svc.Logs(ctx, id, args)
	res := cmdResult{Device: id, Verb: "logs"}
	if err == nil {
		res.Logs = &l
	}
	s.commandDone(w, r, res, err)
}

// ---- login (bearer token in a cookie, for browsers) -----------------------

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", "", "Sign in", safeNext(r.URL.Query().Get("next")))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	tok := r.PostFormValue("token")
	next := safeNext(r.PostFormValue("next"))
	ok := tok != "" && (s.auth.Token != "" && equal(tok, s.auth.Token) || s.auth.AdminToken != "" && equal(tok, s.auth.AdminToken))
	if !ok {
		s.render(w, r, http.StatusUnauthorized, "login", "", "Sign in", next)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps redirects on this site.
func safeNext(n string) string {
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.Contains(n, "\\") {
		return "/"
	}
	return n
}
