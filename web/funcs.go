package web

import (
	"fmt"
	"html/template"
	"net/url"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

var funcs = template.FuncMap{
	"ago":           ago,
	"tone":          tone,
	"selector":      selectorText,
	"labels":        labelList,
	"pe":            pathEscape,
	"pageURL":       pageURL,
	"add":           func(a, b int) int { return a + b },
	"sub":           func(a, b int) int { return a - b },
	"bytes":         humanBytes,
	"liveID":        liveID,
	"upgrading":     func(p core.AgentUpgradePhase) bool { return p.InFlight() },
	"condTone":      condTone,
	"offset":        func(p DevicePage) int { return (p.Page - 1) * p.PerPage },
	"isZeroVersion": func(v core.Version) bool { return v.IsZero() },
	// rowFrag hands one device of a table to the device-row fragment.
	"rowFrag": func(req reqInfo, asOf time.Time, d Device) frag {
		return frag{Req: req, AsOf: asOf, Item: d, Fragment: "row"}
	},
	"itemFrag": func(req reqInfo, item any, fragment string) frag {
		return frag{Req: req, Item: item, Fragment: fragment}
	},
}

func pathEscape(s string) string { return url.PathEscape(s) }

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// liveID is the element id of a live-updated fragment: the SSE stream
// names the same id when it sends a new version.
func liveID(kind, name string) string {
	b := []byte(name)
	for i, c := range b {
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_'
		if !ok {
			b[i] = '_'
		}
	}
	return kind + "-" + string(b)
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
}

// tone maps a phase, state or condition onto a colour class.
func tone(v any) string {
	switch fmt.Sprint(v) {
	case "Committed", "Running", "Succeeded", "Complete", "online", "true":
		return "ok"
	case "Staging", "Verifying", "CutoverReady", "WaitingForStop", "Pending", "Applying", "InProgress", "Marked":
		return "busy"
	case "Failed", "RolledBack", "Reverting", "TimedOut", "Degraded", "offline":
		return "bad"
	default:
		return "muted"
	}
}

func selectorText(s core.LabelSelector) string {
	if s.IsEmpty() {
		return "all devices"
	}
	return s.String()
}

func labelList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range core.SortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func pageURL(q DeviceQuery, page int) string {
	q.Page = page
	v := q.Values()
	if len(v) == 0 {
		return "/devices"
	}
	return "/devices?" + v.Encode()
}

func humanBytes(n uint64) string {
	const gib = 1 << 30
	if n >= gib {
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// condTone colours a condition: Degraded (and Paused) are bad news when
// true, the others good news.
func condTone(c Condition) string {
	switch {
	case !c.Status:
		return "muted"
	case c.Type == "Degraded":
		return "bad"
	case c.Type == "Paused":
		return "busy"
	default:
		return "ok"
	}
}
