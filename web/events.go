package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// liveFragments maps the fragment names a page may watch to the kind of
// object they show.
var liveFragments = map[string]string{
	"device-row":        KindDevice,
	"device-detail":     KindDevice,
	"rollout-row":       KindRollout,
	"rollout-detail":    KindRollout,
	"deployment-row":    KindDeployment,
	"deployment-detail": KindDeployment,
}

// MaxWatches bounds how many fragments one event stream may watch.
const MaxWatches = 1000

// parseWatches reads watch=<fragment>:<name> parameters.
func parseWatches(raw []string) (map[Change][]string, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("no watch parameter: want watch=<fragment>:<name>: %w", ErrInvalid)
	}
	if len(raw) > MaxWatches {
		return nil, fmt.Errorf("%d watch parameters: at most %d: %w", len(raw), MaxWatches, ErrInvalid)
	}
	out := map[Change][]string{}
	for _, w := range raw {
		frag, name, ok := strings.Cut(w, ":")
		kind, known := liveFragments[frag]
		if !ok || !known || name == "" {
			return nil, fmt.Errorf("watch %q: want <fragment>:<name> with fragment one of device-row, device-detail, "+
				"rollout-row, rollout-detail, deployment-row, deployment-detail: %w", w, ErrInvalid)
		}
		c := Change{Kind: kind, Name: name}
		out[c] = append(out[c], frag)
	}
	return out, nil
}

// events streams new versions of the watched fragments as server-sent
// events: "event: swap" with the fragment's HTML as data; app.js swaps it
// in by element id.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	watches, err := parseWatches(r.URL.Query()["watch"])
	if err != nil {
		s.serviceErr(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	sub := s.svc.Changes().Subscribe()
	defer sub.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 3000\n: connected\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	ctx := r.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case <-sub.Ready:
			for _, c := range sub.Drain() {
				for _, frag := range watches[c] {
					html, err := s.renderLive(ctx, frag, c.Name)
					if errors.Is(err, ErrNotFound) {
						continue
					}
					if err != nil {
						s.log.Warn("render live fragment", "fragment", frag, "name", c.Name, "err", err)
						continue
					}
					writeEvent(w, "swap", html)
				}
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func writeEvent(w http.ResponseWriter, event string, data []byte) {
	var b bytes.Buffer
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteByte('\n')
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		b.WriteString("data: ")
		b.Write(bytes.TrimRight(line, "\r"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, _ = w.Write(b.Bytes())
}

// renderLive renders the current version of one watched fragment.
func (s *Server) renderLive(ctx context.Context, fragment, name string) ([]byte, error) {
	f := frag{Req: info(ctx)}
	switch fragment {
	case "device-row", "device-detail":
		d, err := s.svc.Device(ctx, name)
		if err != nil {
			return nil, err
		}
		f.Item, f.AsOf = d, s.asOf(d)
		f.Fragment = strings.TrimPrefix(fragment, "device-")
	case "rollout-row", "rollout-detail":
		d, err := s.svc.Rollout(ctx, name)
		if err != nil {
			return nil, err
		}
		f.Item, f.Fragment = d, strings.TrimPrefix(fragment, "rollout-")
	case "deployment-row", "deployment-detail":
		d, err := s.svc.Deployment(ctx, name)
		if err != nil {
			return nil, err
		}
		f.Item = d
	default:
		return nil, fmt.Errorf("unknown fragment %q", fragment)
	}
	var buf bytes.Buffer
	if err := s.frags.ExecuteTemplate(&buf, fragment, f); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
