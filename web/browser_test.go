//go:build browser

package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flotilla-fleet/flotilla/core"
)

// screenshotDir holds the browser test's screenshots (git-ignored).
const screenshotDir = "testdata/screenshots"

func chromiumPath(t *testing.T) string {
	p := os.Getenv("FLOTILLA_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("chromium not found at %s (make test-web installs Debian's chromium): %v", p, err)
	}
	return p
}

// TestDashboardInChromium drives the mock dashboard in headless Debian
// Chromium: the overview, filtering the device list, blacklisting a row in
// place, opening a device and watching a live update arrive over SSE.
func TestDashboardInChromium(t *testing.T) {
	mock, err := NewMockFleetService(MockConfig{Seed: 1, Devices: 240})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{Service: mock, Title: "Flotilla (mock)",
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	// Cancelling the browser context stops the Chromium process it started.
	t.Cleanup(bcancel)

	// Every script error and CSP violation fails the test.
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("browser reported %s", p)
		}
	})

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			path := filepath.Join(screenshotDir, name)
			t.Logf("screenshot %s", path)
			return os.WriteFile(path, buf, 0o644)
		})
	}
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			_ = chromedp.Do(bctx, shot("failed-"+strings.ReplaceAll(step, " ", "-")+".png"))
			t.Fatalf("%s: %v", step, err)
		}
	}
	value := func(step string, expr string) any {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[any](expr))
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return v
	}
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return void(chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second)))
	}
	eval := func(expr string) chromedp.Action[chromedp.Void] { return void(chromedp.Evaluate[any](expr)) }
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	// 1. The overview.
	run("open the overview",
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(css("#overview")),
		shot("01-overview.png"),
	)
	if title := value("read the heading", `document.querySelector('h1').textContent`); title != "Fleet overview" {
		t.Errorf("overview heading %q", title)
	}

	// 2. Filter the device list: type a label filter and pick a phase; the
	// table is replaced in place and the URL follows.
	run("filter the device list",
		chromedp.Navigate(ts.URL+"/devices"),
		chromedp.WaitVisible(css("#device-table")),
		eval(`window.__samePage = true`),
		chromedp.SendKeys(css(`input[name=label]`), "site=berlin"),
		// Leave the field as a user tabbing on would; otherwise its change
		// event fires only when the Blacklist click below blurs it, and that
		// late filter request races the click.
		eval(`document.querySelector('input[name=label]').blur()`),
		chromedp.SetValue(css(`select[name=phase]`), "Idle"),
		eval(`document.querySelector('select[name=phase]').dispatchEvent(new Event('change', {bubbles: true}))`),
		poll(`location.search.includes('label=site%3Dberlin') && location.search.includes('phase=Idle')`),
		chromedp.Sleep(400*time.Millisecond), // the search box's keyup delay
		poll(`document.body.dataset.pending === '0'`),
		poll(`(() => { const rows = [...document.querySelectorAll('#device-table tr[data-device]')];
			return rows.length > 0 && rows.every(r => r.textContent.includes('site=berlin') && r.querySelector('.phase').textContent.includes('Idle')); })()`),
	)
	want, _ := mock.ListDevices(ctx, DeviceQuery{Phase: core.UpgradeIdle, Labels: core.LabelSelector{MatchLabels: map[string]string{"site": "berlin"}}})
	shown := value("count rows", `document.querySelectorAll('#device-table tr[data-device]').length`)
	if shown != float64(min(want.Total, DefaultPerPage)) {
		t.Errorf("filtered table shows %v rows, the service has %d matches", shown, want.Total)
	}

	// 3. Blacklist the first row: that row changes in place, nothing else
	// reloads.
	target := want.Items[0].ID
	if want.Items[0].Blacklisted {
		t.Fatalf("first filtered device %s is already blacklisted", target)
	}
	row := "#" + liveID("dev", target)
	run("blacklist a row",
		// Let any filter request still pending behind the search box's
		// keyup delay land first: on a loaded machine it can fire late and
		// replace the table under the click.
		poll(`document.body.dataset.pending === '0'`),
		chromedp.Sleep(time.Second),
		poll(`document.body.dataset.pending === '0'`),
		chromedp.Click(css(row+` button[value=blacklist]`)),
		poll(fmt.Sprintf(`(() => { const r = document.querySelector(%q); return !!r && r.classList.contains('blacklisted') && r.textContent.includes('Unblacklist'); })()`, row)),
		shot("02-devices-filtered-blacklisted.png"),
	)
	if same := value("check for a reload", `window.__samePage === true`); same != true {
		t.Error("blacklisting reloaded the page instead of swapping the row")
	}
	if d, _ := mock.Device(ctx, target); !d.Blacklisted {
		t.Errorf("%s is not blacklisted in the service", target)
	}

	// 4. Open a device that is upgrading, from the list.
	up, _ := mock.ListDevices(ctx, DeviceQuery{Phase: core.UpgradeStaging, Online: OnlineYes})
	if up.Total == 0 {
		t.Fatal("the mock has no online device in Staging")
	}
	dev := up.Items[0]
	run("open a device",
		chromedp.Navigate(ts.URL+"/devices?phase=Staging&online=online"),
		chromedp.WaitVisible(css("#device-table")),
		chromedp.Click(css(fmt.Sprintf(`a[href="/devices/%s"]`, dev.ID))),
		chromedp.WaitVisible(css("#"+liveID("device", dev.ID))),
		poll(`document.body.dataset.liveState === 'connected'`),
	)
	if h1 := value("read the heading", `document.querySelector('h1').textContent`); h1 != dev.ID {
		t.Errorf("device page heading %q, want %q", h1, dev.ID)
	}
	run("ping it",
		chromedp.Click(css(`form[action$="/ping"] button`)),
		poll(`!!document.querySelector('#command-result') && document.querySelector('#command-result').textContent.includes('pong')`),
	)

	// 5. Watch a live update arrive: step the fleet until this device moves
	// on; the detail panel must follow without a reload.
	var next core.AgentUpgradePhase
	for i := 0; i < 50 && next == ""; i++ {
		mock.Step()
		if d, _ := mock.Device(ctx, dev.ID); d.Upgrade.Phase != core.UpgradeStaging {
			next = d.Upgrade.Phase
		}
	}
	if next == "" {
		t.Fatalf("%s stayed in Staging for 50 steps", dev.ID)
	}
	sel := "#" + liveID("device", dev.ID)
	run("see the live update",
		poll(fmt.Sprintf(`document.querySelector(%q + ' .phase .pill').textContent.trim() === %q`, sel, string(next))),
		poll(`parseInt(document.body.dataset.liveUpdates || '0') > 0`),
		shot("03-device-live-update.png"),
	)

	// 6. Pause the rollout from its page.
	run("pause the rollout",
		chromedp.Navigate(ts.URL+"/rollouts/agent-2026-11"),
		chromedp.WaitVisible(css("#rollout-detail-agent-2026-11")),
		chromedp.Click(css(`#rollout-detail-agent-2026-11 form[action$="/pause"] button`)),
		poll(`!!document.querySelector('#rollout-detail-agent-2026-11 form[action$="/resume"]')`),
		shot("04-rollout-paused.png"),
	)
	if r, _ := mock.Rollout(ctx, "agent-2026-11"); !r.Paused {
		t.Error("the rollout is not paused in the service")
	}

	// 7. A bad filter shows the 400 flash instead of a broken table.
	run("bad filter",
		chromedp.Navigate(ts.URL+"/devices"),
		chromedp.WaitVisible(css("#device-table")),
		chromedp.SendKeys(css(`input[name=label]`), "bad key=x"),
		poll(`!!document.querySelector('#flash .flash') && document.querySelector('#flash').textContent.includes('400')`),
		shot("05-bad-filter.png"),
	)
	// The refused request logs a 400 in the console: expected here.
	mu.Lock()
	kept := problems[:0]
	for _, p := range problems {
		if !strings.Contains(p, "400") {
			kept = append(kept, p)
		}
	}
	problems = kept
	mu.Unlock()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// void drops an action's value.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}
