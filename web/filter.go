package web

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/flotilla-fleet/flotilla/core"
)

// ParseLabelFilter parses the dashboard's label filter: comma-separated
// terms, each key=value, key!=value, key (the label exists) or !key (it does
// not). The empty string is the empty selector. Errors wrap ErrInvalid and
// name the bad term.
func ParseLabelFilter(s string) (core.LabelSelector, error) {
	var sel core.LabelSelector
	s = strings.TrimSpace(s)
	if s == "" {
		return sel, nil
	}
	for i, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			return sel, fmt.Errorf("label filter %q: term %d is empty: %w", s, i+1, ErrInvalid)
		}
		switch {
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			sel.MatchExpressions = append(sel.MatchExpressions, core.SelectorRequirement{
				Key: strings.TrimSpace(k), Operator: core.OpNotIn, Values: []string{strings.TrimSpace(v)}})
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			if sel.MatchLabels == nil {
				sel.MatchLabels = map[string]string{}
			}
			sel.MatchLabels[strings.TrimSpace(k)] = strings.TrimSpace(v)
		case strings.HasPrefix(term, "!"):
			sel.MatchExpressions = append(sel.MatchExpressions, core.SelectorRequirement{
				Key: strings.TrimSpace(term[1:]), Operator: core.OpDoesNotExist})
		default:
			sel.MatchExpressions = append(sel.MatchExpressions, core.SelectorRequirement{
				Key: term, Operator: core.OpExists})
		}
	}
	if err := sel.Validate(); err != nil {
		return core.LabelSelector{}, fmt.Errorf("label filter %q: %v: %w", s, err, ErrInvalid)
	}
	return sel, nil
}

// ParseDeviceQuery reads the device list's query parameters: version,
// online (online|offline), phase (an upgrade phase), label (see
// ParseLabelFilter), blacklisted (true|false), q (ID substring), page and
// per_page. Unknown parameters are ignored; malformed ones give an error
// wrapping ErrInvalid that names the parameter.
func ParseDeviceQuery(v url.Values) (DeviceQuery, error) {
	q := DeviceQuery{
		Version: strings.TrimSpace(v.Get("version")),
		Online:  v.Get("online"),
		Phase:   core.AgentUpgradePhase(v.Get("phase")),
		Search:  strings.TrimSpace(v.Get("q")),
	}
	if q.Version != "" {
		if _, err := core.ParseVersion(q.Version); err != nil {
			return q, fmt.Errorf("version: %v: %w", err, ErrInvalid)
		}
	}
	sel, err := ParseLabelFilter(v.Get("label"))
	if err != nil {
		return q, err
	}
	q.Labels = sel
	switch b := v.Get("blacklisted"); b {
	case "":
	case "true", "false":
		t := b == "true"
		q.Blacklisted = &t
	default:
		return q, fmt.Errorf("blacklisted %q: want true or false: %w", b, ErrInvalid)
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"page", &q.Page}, {"per_page", &q.PerPage}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("%s %q: want a whole number of at least 1: %w", p.name, s, ErrInvalid)
		}
		*p.dst = n
	}
	return q.Normalize()
}

// Values renders the query back into URL parameters (defaults omitted), for
// pagination links and the pushed URL.
func (q DeviceQuery) Values() url.Values {
	v := url.Values{}
	if q.Version != "" {
		v.Set("version", q.Version)
	}
	if q.Online != "" {
		v.Set("online", q.Online)
	}
	if q.Phase != "" {
		v.Set("phase", string(q.Phase))
	}
	if s := LabelFilterString(q.Labels); s != "" {
		v.Set("label", s)
	}
	if q.Blacklisted != nil {
		v.Set("blacklisted", strconv.FormatBool(*q.Blacklisted))
	}
	if q.Search != "" {
		v.Set("q", q.Search)
	}
	if q.Page > 1 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if q.PerPage != 0 && q.PerPage != DefaultPerPage {
		v.Set("per_page", strconv.Itoa(q.PerPage))
	}
	return v
}

// LabelFilterString is the inverse of ParseLabelFilter for the selectors it
// produces (keys sorted).
func LabelFilterString(sel core.LabelSelector) string {
	var terms []string
	for _, k := range core.SortedKeys(sel.MatchLabels) {
		terms = append(terms, k+"="+sel.MatchLabels[k])
	}
	for _, r := range sel.MatchExpressions {
		switch r.Operator {
		case core.OpNotIn:
			for _, v := range r.Values {
				terms = append(terms, r.Key+"!="+v)
			}
		case core.OpIn:
			for _, v := range r.Values {
				terms = append(terms, r.Key+"="+v)
			}
		case core.OpExists:
			terms = append(terms, r.Key)
		case core.OpDoesNotExist:
			terms = append(terms, "!"+r.Key)
		}
	}
	return strings.Join(terms, ",")
}
