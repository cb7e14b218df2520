package core

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestLabelSelectorMatches(t *testing.T) {
	labels := map[string]string{"site": "berlin", "tier": "edge", "gpu": ""}
	req := func(k string, op SelectorOperator, vs ...string) SelectorRequirement {
		return SelectorRequirement{Key: k, Operator: op, Values: vs}
	}
	cases := []struct {
		name string
		sel  LabelSelector
		want bool
	}{
		{"empty selector matches all", LabelSelector{}, true},
		{"matchLabels hit", LabelSelector{MatchLabels: map[string]string{"site": "berlin"}}, true},
		{"matchLabels all must hold", LabelSelector{MatchLabels: map[string]string{"site": "berlin", "tier": "core"}}, false},
		{"matchLabels missing key", LabelSelector{MatchLabels: map[string]string{"zone": "a"}}, false},
		{"matchLabels empty value", LabelSelector{MatchLabels: map[string]string{"gpu": ""}}, true},
		{"In hit", LabelSelector{MatchExpressions: []SelectorRequirement{req("site", OpIn, "paris", "berlin")}}, true},
		{"In miss", LabelSelector{MatchExpressions: []SelectorRequirement{req("site", OpIn, "paris")}}, false},
		{"In absent key", LabelSelector{MatchExpressions: []SelectorRequirement{req("zone", OpIn, "a")}}, false},
		{"NotIn hit", LabelSelector{MatchExpressions: []SelectorRequirement{req("site", OpNotIn, "berlin")}}, false},
		{"NotIn miss", LabelSelector{MatchExpressions: []SelectorRequirement{req("site", OpNotIn, "paris")}}, true},
		{"NotIn absent key matches", LabelSelector{MatchExpressions: []SelectorRequirement{req("zone", OpNotIn, "a")}}, true},
		{"Exists", LabelSelector{MatchExpressions: []SelectorRequirement{req("gpu", OpExists)}}, true},
		{"Exists absent", LabelSelector{MatchExpressions: []SelectorRequirement{req("zone", OpExists)}}, false},
		{"DoesNotExist", LabelSelector{MatchExpressions: []SelectorRequirement{req("zone", OpDoesNotExist)}}, true},
		{"DoesNotExist present", LabelSelector{MatchExpressions: []SelectorRequirement{req("tier", OpDoesNotExist)}}, false},
		{"labels and expressions combined", LabelSelector{MatchLabels: map[string]string{"tier": "edge"},
			MatchExpressions: []SelectorRequirement{req("site", OpIn, "berlin"), req("zone", OpDoesNotExist)}}, true},
		{"unknown operator matches nothing", LabelSelector{MatchExpressions: []SelectorRequirement{req("site", "Near", "berlin")}}, false},
	}
	for _, c := range cases {
		if got := c.sel.Matches(labels); got != c.want {
			t.Errorf("%s: Matches = %v, want %v (selector %s)", c.name, got, c.want, c.sel)
		}
	}
	if !(LabelSelector{}).Matches(nil) || (LabelSelector{MatchExpressions: []SelectorRequirement{req("a", OpExists)}}).Matches(nil) {
		t.Error("selectors against a device without labels")
	}
}

func TestLabelSelectorValidate(t *testing.T) {
	req := func(k string, op SelectorOperator, vs ...string) []SelectorRequirement {
		return []SelectorRequirement{{Key: k, Operator: op, Values: vs}}
	}
	cases := []struct {
		name string
		sel  LabelSelector
		want string // substring; "" means valid
	}{
		{"empty", LabelSelector{}, ""},
		{"prefixed key", LabelSelector{MatchLabels: map[string]string{"flotilla.dev/site": "berlin"}}, ""},
		{"all operators", LabelSelector{MatchExpressions: []SelectorRequirement{
			{Key: "a", Operator: OpIn, Values: []string{"x"}}, {Key: "b", Operator: OpNotIn, Values: []string{"y", ""}},
			{Key: "c", Operator: OpExists}, {Key: "d", Operator: OpDoesNotExist}}}, ""},
		{"empty key", LabelSelector{MatchLabels: map[string]string{"": "x"}}, `matchLabels[""]: label key must not be empty`},
		{"bad key char", LabelSelector{MatchLabels: map[string]string{"a b": "x"}}, `matchLabels["a b"]`},
		{"key too long", LabelSelector{MatchLabels: map[string]string{strings.Repeat("k", 64): "x"}}, "must be 1-63 characters"},
		{"upper-case prefix", LabelSelector{MatchLabels: map[string]string{"Flotilla.dev/x": "y"}}, "prefix must be a lower-case DNS subdomain"},
		{"empty prefix", LabelSelector{MatchLabels: map[string]string{"/x": "y"}}, "prefix must be 1-253 characters"},
		{"bad value", LabelSelector{MatchLabels: map[string]string{"site": "-berlin"}}, `matchLabels["site"]: label value "-berlin": must start and end with a letter or digit`},
		{"expression bad key", LabelSelector{MatchExpressions: req("a*", OpExists)}, "matchExpressions[0].key"},
		{"In without values", LabelSelector{MatchExpressions: req("a", OpIn)}, "matchExpressions[0].values: operator In needs at least one value"},
		{"NotIn without values", LabelSelector{MatchExpressions: req("a", OpNotIn)}, "matchExpressions[0].values: operator NotIn needs"},
		{"Exists with values", LabelSelector{MatchExpressions: req("a", OpExists, "x")}, "matchExpressions[0].values: operator Exists takes no values"},
		{"DoesNotExist with values", LabelSelector{MatchExpressions: req("a", OpDoesNotExist, "x")}, "operator DoesNotExist takes no values"},
		{"bad In value", LabelSelector{MatchExpressions: req("a", OpIn, "ok", "not ok")}, "matchExpressions[0].values[1]"},
		{"unknown operator", LabelSelector{MatchExpressions: req("a", "in", "x")}, `matchExpressions[0].operator: unknown operator "in"`},
		{"second expression named", LabelSelector{MatchExpressions: []SelectorRequirement{{Key: "a", Operator: OpExists}, {Key: "b", Operator: "Gt"}}}, "matchExpressions[1].operator"},
	}
	for _, c := range cases {
		err := c.sel.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want valid", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestLabelSelectorStringAndJSON(t *testing.T) {
	sel := LabelSelector{
		MatchLabels: map[string]string{"tier": "edge", "site": "berlin"},
		MatchExpressions: []SelectorRequirement{
			{Key: "zone", Operator: OpIn, Values: []string{"a", "b"}},
			{Key: "arch", Operator: OpNotIn, Values: []string{"arm"}},
			{Key: "gpu", Operator: OpExists},
			{Key: "old", Operator: OpDoesNotExist},
		},
	}
	if got, want := sel.String(), "site=berlin,tier=edge,zone in (a,b),arch notin (arm),gpu,!old"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	b, err := json.Marshal(sel)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"matchLabels":{"site":"berlin","tier":"edge"},"matchExpressions":[{"key":"zone","operator":"In","values":["a","b"]},{"key":"arch","operator":"NotIn","values":["arm"]},{"key":"gpu","operator":"Exists"},{"key":"old","operator":"DoesNotExist"}]}`; string(b) != want {
		t.Errorf("JSON = %s\nwant %s", b, want)
	}
	if (LabelSelector{}).String() != "" || !(LabelSelector{}).IsEmpty() || sel.IsEmpty() {
		t.Error("empty selector")
	}
}

func TestValidateLabels(t *testing.T) {
	if err := ValidateLabels(map[string]string{"site": "berlin", "flotilla.dev/tier": "", "a.b_c-d": "X_1"}); err != nil {
		t.Errorf("valid labels: %v", err)
	}
	for labels, want := range map[*map[string]string]string{
		{"site": "ber lin"}: `label "site": label value "ber lin"`,
		{"": "x"}:           "label key must not be empty",
		{"x/": "y"}:         `label key "x/": must be 1-63 characters`,
		{"_site": "x"}:      "must start and end with a letter or digit",
		{"site": "a\x00b"}:  "may only contain letters, digits",
	} {
		if err := ValidateLabels(*labels); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateLabels(%v) = %v, want %q", *labels, err, want)
		}
	}
}
