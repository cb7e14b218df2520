package web

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// harness is a dashboard over a fresh seeded mock, with a browser-like
// client (cookie jar) that has loaded one page and so holds a CSRF token.
type harness struct {
	t    *testing.T
	mock *MockFleetService
	srv  *httptest.Server
	c    *http.Client
	csrf string
}

func newHarness(t *testing.T, auth AuthConfig) *harness {
	t.Helper()
	m, err := NewMockFleetService(MockConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Options{Service: m, Auth: auth, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	jar, _ := cookiejar.New(nil)
	h := &harness{t: t, mock: m, srv: ts, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	return h
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// load GETs the device page to pick up the CSRF cookie and token.
func (h *harness) load(hdr http.Header) {
	h.t.Helper()
	code, body, _ := h.do("GET", "/devices/dev-00001", nil, hdr)
	if code != 200 {
		h.t.Fatalf("GET device page: %d\n%s", code, body)
	}
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("no CSRF token in the device page")
	}
	h.csrf = m[1]
}

func (h *harness) do(method, path string, form url.Values, hdr http.Header) (int, string, http.Header) {
	h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func htmx(target string) http.Header {
	return http.Header{"Hx-Request": {"true"}, "Hx-Target": {target}}
}

func (h *harness) blacklisted(id string) bool {
	h.t.Helper()
	d, err := h.mock.Device(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return d.Blacklisted
}

func TestPagesRender(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{"Fleet overview", ">24</span> devices", "v1.3.0", "agent-2026-11", "camera-ingest", "Needs attention"}},
		{"/devices", []string{`id="device-table"`, "dev-00001", "dev-00024", "<strong>24</strong> devices match"}},
		{"/devices?phase=Failed", []string{"dev-00002", "<strong>1</strong> devices match"}},
		{"/devices?online=offline", []string{"dev-00004", "offline"}},
		{"/devices?label=site%3Dberlin", []string{"site=berlin"}},
		{"/devices?per_page=5&page=2", []string{"dev-00006", "dev-00010", "page 2 of 5", "← previous", "next →"}},
		{"/devices?version=v1.1.0", []string{"v1.1.0"}},
		{"/devices?blacklisted=true", []string{"dev-00006", "Unblacklist"}},
		{"/devices?q=0002", []string{"dev-00002", "<strong>6</strong> devices match"}},
		{"/devices/dev-00002", []string{"SelfTestFailed", "agent-2026-11", "Ping", "Tail logs", "Inventory"}},
		{"/deployments", []string{"camera-ingest", "edge-proxy", "ml-inference", "telemetry"}},
		{"/deployments/edge-proxy", []string{"Waves", "Failing devices", "connection refused", "Degraded"}},
		{"/rollouts", []string{"agent-2026-10", "agent-2026-11", "agent-rc-canary", "Resume", "Pause"}},
		{"/rollouts/agent-2026-11", []string{"Waves", `data-wave="3"`, "v1.3.0", "By upgrade phase"}},
		{"/static/htmx.min.js", []string{"htmx"}},
		{"/static/style.css", []string{"--accent"}},
	} {
		code, body, hdr := h.do("GET", tc.path, nil, nil)
		if code != 200 {
			t.Errorf("GET %s: status %d, want 200\n%s", tc.path, code, body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: body lacks %q", tc.path, w)
			}
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q lacks script-src 'self'", tc.path, csp)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
			t.Errorf("GET %s: page has an inline script", tc.path)
		}
	}
}

func TestFilteredListOnlyHasMatchingRows(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	_, body, _ := h.do("GET", "/devices?online=offline&per_page=500", nil, nil)
	rows := regexp.MustCompile(`<tr id="dev-[^"]+"[^>]*>([\s\S]*?)</tr>`).FindAllStringSubmatch(body, -1)
	if len(rows) == 0 {
		t.Fatal("no rows for online=offline")
	}
	for _, r := range rows {
		if strings.Contains(r[1], ">online") {
			t.Errorf("online device in the offline list: %s", r[0])
		}
	}
}

func TestHTMXListRequestReturnsOnlyTheTable(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	code, body, _ := h.do("GET", "/devices?phase=Committed", nil, htmx("device-table"))
	if code != 200 || !strings.HasPrefix(strings.TrimSpace(body), `<div id="device-table">`) || strings.Contains(body, "<html") {
		t.Fatalf("status %d, want the bare table fragment, got:\n%.300s", code, body)
	}
	if strings.Contains(body, ">Idle<") {
		t.Error("phase=Committed fragment lists an Idle device")
	}
}

func TestBadInputGivesClearErrors(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/devices/no-such-device", 404, `device &#34;no-such-device&#34;: not found`},
		{"/deployments/nope", 404, "deployment &#34;nope&#34;: not found"},
		{"/rollouts/nope", 404, "rollout &#34;nope&#34;: not found"},
		{"/no/such/page", 404, "There is no page at /no/such/page"},
		{"/devices?phase=Exploded", 400, "unknown upgrade phase"},
		{"/devices?online=maybe", 400, "want online or offline"},
		{"/devices?page=zero", 400, "page &#34;zero&#34;"},
		{"/devices?per_page=100000", 400, "per_page 100000"},
		{"/devices?label=a%3Db%2C%2C", 400, "term 2 is empty"},
		{"/devices?label=bad%20key%3Dv", 400, "label filter"},
		{"/devices?version=1.x", 400, "invalid version"},
		{"/devices?blacklisted=perhaps", 400, "want true or false"},
		{"/events", 400, "no watch parameter"},
		{"/events?watch=cpu:dev-00001", 400, "watch &#34;cpu:dev-00001&#34;"},
	} {
		code, body, _ := h.do("GET", tc.path, nil, nil)
		if code != tc.code || !strings.Contains(strings.ToLower(body), strings.ToLower(tc.want)) {
			t.Errorf("GET %s: status %d, want %d with %q; body:\n%.600s", tc.path, code, tc.code, tc.want, body)
		}
	}
	// HTMX requests get a flash fragment, not a page.
	code, body, _ := h.do("GET", "/devices?phase=Exploded", nil, htmx("device-table"))
	if code != 400 || !strings.Contains(body, `class="flash error"`) || strings.Contains(body, "<html") {
		t.Errorf("HTMX bad filter: status %d body %.300s", code, body)
	}
}

func TestBlacklistSwapsTheRowInPlace(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	h.load(nil)
	code, body, _ := h.do("POST", "/devices/dev-00007/blacklist",
		url.Values{"csrf": {h.csrf}, "fragment": {"row"}}, htmx("dev-dev-00007"))
	if code != 200 {
		t.Fatalf("blacklist: %d %s", code, body)
	}
	if !strings.HasPrefix(strings.TrimSpace(body), `<tr id="dev-dev-00007"`) || !strings.Contains(body, "Unblacklist") ||
		!strings.Contains(body, "blacklisted") {
		t.Errorf("blacklist answer is not the updated row:\n%s", body)
	}
	if !h.blacklisted("dev-00007") {
		t.Error("device not blacklisted in the service")
	}
	// The CSRF token can also come in the header HTMX sends.
	hdr := htmx("device-dev-00007")
	hdr.Set("X-CSRF-Token", h.csrf)
	code, body, _ = h.do("POST", "/devices/dev-00007/unblacklist", url.Values{"fragment": {"detail"}}, hdr)
	if code != 200 || !strings.Contains(body, `id="device-dev-00007"`) || !strings.Contains(body, ">Blacklist<") {
		t.Errorf("unblacklist detail: %d\n%s", code, body)
	}
	if h.blacklisted("dev-00007") {
		t.Error("device still blacklisted")
	}
	// Without HTMX a plain form post redirects back to the device.
	code, _, hdrs := h.do("POST", "/devices/dev-00007/blacklist", url.Values{"csrf": {h.csrf}}, nil)
	if code != http.StatusSeeOther || hdrs.Get("Location") != "/devices/dev-00007" {
		t.Errorf("plain post: %d to %q, want 303 to /devices/dev-00007", code, hdrs.Get("Location"))
	}
}

func TestRefusedActionsChangeNothing(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	h.load(nil)
	for _, tc := range []struct {
		name string
		path string
		form url.Values
		hdr  http.Header
		code int
		want string
	}{
		{"no CSRF token", "/devices/dev-00007/blacklist", url.Values{"fragment": {"row"}}, nil, 403, "missing CSRF token"},
		{"wrong CSRF token", "/devices/dev-00007/blacklist", url.Values{"csrf": {"forged"}}, nil, 403, "does not match"},
		{"cross-origin", "/devices/dev-00007/blacklist", url.Values{"csrf": {h.csrf}},
			http.Header{"Origin": {"https://evil.example"}}, 403, "cross-origin"},
		{"unknown device", "/devices/dev-99999/blacklist", url.Values{"csrf": {h.csrf}, "fragment": {"row"}}, nil, 404, "not found"},
		{"malformed form", "/devices/dev-00007/blacklist", url.Values{"csrf": {h.csrf}, "fragment": {"sideways"}}, nil, 400, "want row or detail"},
		{"GET on an action", "/devices/dev-00007/blacklist", nil, nil, 405, ""},
		{"unknown rollout", "/rollouts/nope/pause", url.Values{"csrf": {h.csrf}}, nil, 404, "not found"},
		{"rollout without CSRF", "/rollouts/agent-2026-11/pause", url.Values{}, nil, 403, "CSRF"},
	} {
		method := "POST"
		if tc.form == nil {
			method = "GET"
		}
		code, body, _ := h.do(method, tc.path, tc.form, tc.hdr)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: status %d, want %d with %q\n%.400s", tc.name, code, tc.code, tc.want, body)
		}
	}
	if h.blacklisted("dev-00007") {
		t.Error("a refused request blacklisted dev-00007")
	}
	r, _ := h.mock.Rollout(context.Background(), "agent-2026-11")
	if r.Paused {
		t.Error("a refused request paused agent-2026-11")
	}
	// A client without the cookie cannot post at all.
	jarless := &http.Client{}
	resp, err := jarless.PostForm(h.srv.URL+"/devices/dev-00007/blacklist", url.Values{"csrf": {h.csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || h.blacklisted("dev-00007") {
		t.Errorf("cookieless post: status %d, blacklisted %v", resp.StatusCode, h.blacklisted("dev-00007"))
	}
}

func TestPauseAndResumeRollout(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	h.load(nil)
	code, body, _ := h.do("POST", "/rollouts/agent-2026-11/pause", url.Values{"csrf": {h.csrf}, "fragment": {"row"}}, htmx("rollout-agent-2026-11"))
	if code != 200 || !strings.Contains(body, `<tr id="rollout-agent-2026-11"`) || !strings.Contains(body, "Resume") || !strings.Contains(body, ">Paused<") {
		t.Fatalf("pause: %d\n%s", code, body)
	}
	if r, _ := h.mock.Rollout(context.Background(), "agent-2026-11"); !r.Paused {
		t.Error("rollout not paused in the service")
	}
	// A paused rollout starts no device.
	before, _ := h.mock.Rollout(context.Background(), "agent-2026-11")
	for range 5 {
		h.mock.Step()
	}
	after, _ := h.mock.Rollout(context.Background(), "agent-2026-11")
	if after.Counts.Waiting < before.Counts.Waiting {
		t.Errorf("paused rollout started devices: waiting %d → %d", before.Counts.Waiting, after.Counts.Waiting)
	}
	code, body, _ = h.do("POST", "/rollouts/agent-2026-11/resume", url.Values{"csrf": {h.csrf}, "fragment": {"detail"}}, htmx("rollout-detail-agent-2026-11"))
	if code != 200 || !strings.Contains(body, `id="rollout-detail-agent-2026-11"`) || !strings.Contains(body, ">Pause<") {
		t.Fatalf("resume: %d\n%s", code, body)
	}
	if r, _ := h.mock.Rollout(context.Background(), "agent-2026-11"); r.Paused {
		t.Error("rollout still paused")
	}
}

func TestPingAndLogs(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	h.load(nil)
	for _, tc := range []struct {
		name string
		path string
		form url.Values
		code int
		want string
	}{
		{"ping online", "/devices/dev-00001/ping", url.Values{}, 200, "pong"},
		{"ping offline", "/devices/dev-00004/ping", url.Values{}, 200, "offline"},
		{"ping unknown", "/devices/nope/ping", url.Values{}, 404, "not found"},
		{"agent logs", "/devices/dev-00001/logs", url.Values{"lines": {"7"}}, 200, "7 lines"},
		{"workload logs", "/devices/dev-00001/logs", url.Values{"deployment": {"edge-proxy"}, "lines": {"20"}}, 200, "connection refused"},
		{"logs of a deployment the device lacks", "/devices/dev-00001/logs", url.Values{"deployment": {"ml-inference"}}, 200, "rejected"},
		{"logs lines not a number", "/devices/dev-00001/logs", url.Values{"lines": {"lots"}}, 400, "lines &#34;lots&#34;"},
		{"logs bad deployment name", "/devices/dev-00001/logs", url.Values{"deployment": {"a.b"}}, 400, "must not contain"},
	} {
		tc.form.Set("csrf", h.csrf)
		code, body, _ := h.do("POST", tc.path, tc.form, htmx("command-result"))
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: status %d, want %d with %q\n%.500s", tc.name, code, tc.code, tc.want, body)
		}
	}
}

func TestBearerTokenAndAdminCheck(t *testing.T) {
	h := newHarness(t, AuthConfig{Token: "viewer-secret", AdminToken: "admin-secret"})
	code, _, hdr := h.do("GET", "/devices", nil, nil)
	if code != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/login") {
		t.Errorf("browser without token: %d %q, want a redirect to /login", code, hdr.Get("Location"))
	}
	if code, _, _ := h.do("GET", "/devices", nil, htmx("device-table")); code != 401 {
		t.Errorf("HTMX without token: %d, want 401", code)
	}
	if code, _, _ := h.do("GET", "/devices", nil, http.Header{"Authorization": {"Bearer wrong"}, "Hx-Request": {"1"}}); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	viewer := http.Header{"Authorization": {"Bearer viewer-secret"}}
	h.load(viewer)
	if strings.Contains(mustGet(t, h, "/devices", viewer), ">Blacklist<") {
		t.Error("a viewer is offered the Blacklist button")
	}
	hdr = viewer.Clone()
	hdr.Set("X-CSRF-Token", h.csrf)
	code, body, _ := h.do("POST", "/devices/dev-00007/blacklist", url.Values{"fragment": {"row"}}, hdr)
	if code != 403 || !strings.Contains(body, "Only admins") || h.blacklisted("dev-00007") {
		t.Errorf("viewer blacklist: %d %q blacklisted=%v", code, body, h.blacklisted("dev-00007"))
	}
	hdr.Set("Authorization", "Bearer admin-secret")
	if code, _, _ := h.do("POST", "/devices/dev-00007/blacklist", url.Values{"fragment": {"row"}}, hdr); code != 200 || !h.blacklisted("dev-00007") {
		t.Errorf("admin blacklist: %d", code)
	}
	// The login form sets the token cookie for browsers; it needs the
	// CSRF token of the login page like every POST.
	loginPage := mustGet(t, h, "/login?next=/rollouts", nil)
	m := csrfRE.FindStringSubmatch(loginPage)
	if m == nil {
		t.Fatal("no CSRF token on the login page")
	}
	if code, _, _ := h.do("POST", "/login", url.Values{"token": {"viewer-secret"}}, nil); code != 403 {
		t.Errorf("login without CSRF token: %d, want 403", code)
	}
	code, _, hdr = h.do("POST", "/login", url.Values{"csrf": {m[1]}, "token": {"viewer-secret"}, "next": {"/rollouts"}}, nil)
	if code != http.StatusSeeOther || hdr.Get("Location") != "/rollouts" {
		t.Errorf("login: %d to %q", code, hdr.Get("Location"))
	}
	if code, _, _ := h.do("GET", "/rollouts", nil, nil); code != 200 {
		t.Errorf("after login: %d", code)
	}
	if code, _, _ := h.do("POST", "/login", url.Values{"csrf": {m[1]}, "token": {"guess"}}, nil); code != 401 {
		t.Errorf("bad login: %d, want 401", code)
	}
}

func mustGet(t *testing.T, h *harness, path string, hdr http.Header) string {
	t.Helper()
	code, body, _ := h.do("GET", path, nil, hdr)
	if code != 200 {
		t.Fatalf("GET %s: %d", path, code)
	}
	return body
}

func TestTrustedHeaderAuth(t *testing.T) {
	h := newHarness(t, AuthConfig{UserHeader: "X-Forwarded-User", GroupsHeader: "X-Forwarded-Groups", AdminGroups: []string{"fleet-admins"}})
	if code, _, _ := h.do("GET", "/", nil, nil); code != 401 {
		t.Errorf("no proxy header: %d, want 401", code)
	}
	alice := http.Header{"X-Forwarded-User": {"alice"}, "X-Forwarded-Groups": {"dev, fleet-admins"}}
	bob := http.Header{"X-Forwarded-User": {"bob"}, "X-Forwarded-Groups": {"dev"}}
	h.load(bob)
	hdr := bob.Clone()
	hdr.Set("X-CSRF-Token", h.csrf)
	if code, _, _ := h.do("POST", "/rollouts/agent-2026-11/pause", url.Values{}, hdr); code != 403 {
		t.Errorf("bob pauses: %d, want 403", code)
	}
	hdr = alice.Clone()
	hdr.Set("X-CSRF-Token", h.csrf)
	if code, _, _ := h.do("POST", "/rollouts/agent-2026-11/pause", url.Values{}, hdr); code != 303 {
		t.Errorf("alice pauses: %d, want 303", code)
	}
	if r, _ := h.mock.Rollout(context.Background(), "agent-2026-11"); !r.Paused {
		t.Error("alice's pause did not happen")
	}
}

func TestLiveUpdatesOverSSE(t *testing.T) {
	h := newHarness(t, AuthConfig{})
	h.load(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/events?watch=device-row:dev-00008&watch=rollout-detail:agent-2026-11", nil)
	resp, err := h.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	readUntil := func(marker string) string {
		var b strings.Builder
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before %q: %v\n%s", marker, err, b.String())
			}
			b.WriteString(line)
			if strings.Contains(line, marker) {
				return b.String()
			}
		}
	}
	readUntil(": connected")
	for h.mock.Changes().Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := h.mock.SetBlacklisted(ctx, "dev-00008", true); err != nil {
		t.Fatal(err)
	}
	got := readUntil(`data: <tr id="dev-dev-00008"`)
	got += readUntil("\n")
	if !strings.Contains(got, "event: swap") {
		t.Errorf("no swap event:\n%s", got)
	}
	rest := readUntil("</tr>")
	if !strings.Contains(rest, "Unblacklist") {
		t.Errorf("the streamed row does not show the blacklist:\n%s", rest)
	}
	// Step moves the rollout: its detail fragment streams too.
	h.mock.Step()
	readUntil(`data: <section id="rollout-detail-agent-2026-11"`)
}
