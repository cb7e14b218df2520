package core

import (
	"fmt"
	"slices"
	"strings"
)

// SelectorOperator is the operator of one match expression.
type SelectorOperator string

const (
	OpIn           SelectorOperator = "In"
	OpNotIn        SelectorOperator = "NotIn"
	OpExists       SelectorOperator = "Exists"
	OpDoesNotExist SelectorOperator = "DoesNotExist"
)

// SelectorRequirement is one match expression: key, operator and values, as
// in Kubernetes label selectors.
type SelectorRequirement struct {
	Key      string           `json:"key"`
	Operator SelectorOperator `json:"operator"`
	Values   []string         `json:"values,omitempty"`
}

// LabelSelector selects devices by their labels: every matchLabels pair and
// every matchExpressions requirement must hold. The empty selector matches
// every device.
type LabelSelector struct {
	MatchLabels      map[string]string     `json:"matchLabels,omitempty"`
	MatchExpressions []SelectorRequirement `json:"matchExpressions,omitempty"`
}

// Validate reports the first malformed part of the selector, naming it.
func (s LabelSelector) Validate() error {
	for _, k := range sortedKeys(s.MatchLabels) {
		if err := validateLabelKey(k); err != nil {
			return fmt.Errorf("matchLabels[%q]: %w", k, err)
		}
		if err := validateLabelValue(s.MatchLabels[k]); err != nil {
			return fmt.Errorf("matchLabels[%q]: %w", k, err)
		}
	}
	for i, r := range s.MatchExpressions {
		field := fmt.Sprintf("matchExpressions[%d]", i)
		if err := validateLabelKey(r.Key); err != nil {
			return fmt.Errorf("%s.key: %w", field, err)
		}
		switch r.Operator {
		case OpIn, OpNotIn:
			if len(r.Values) == 0 {
				return fmt.Errorf("%s.values: operator %s needs at least one value", field, r.Operator)
			}
			for j, v := range r.Values {
				if err := validateLabelValue(v); err != nil {
					return fmt.Errorf("%s.values[%d]: %w", field, j, err)
				}
			}
		case OpExists, OpDoesNotExist:
			if len(r.Values) != 0 {
				return fmt.Errorf("%s.values: operator %s takes no values", field, r.Operator)
			}
		default:
			return fmt.Errorf("%s.operator: unknown operator %q (want In, NotIn, Exists or DoesNotExist)", field, r.Operator)
		}
	}
	return nil
}

// Matches reports whether labels satisfy the selector. A selector that does
// not validate matches nothing.
func (s LabelSelector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case OpIn:
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case OpNotIn:
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case OpExists:
			if !ok {
				return false
			}
		case OpDoesNotExist:
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// IsEmpty reports whether the selector has no requirement (matches all).
func (s LabelSelector) IsEmpty() bool {
	return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// String renders the selector in kubectl's syntax, with sorted keys.
func (s LabelSelector) String() string {
	var parts []string
	for _, k := range sortedKeys(s.MatchLabels) {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case OpIn:
			parts = append(parts, r.Key+" in ("+strings.Join(r.Values, ",")+")")
		case OpNotIn:
			parts = append(parts, r.Key+" notin ("+strings.Join(r.Values, ",")+")")
		case OpExists:
			parts = append(parts, r.Key)
		case OpDoesNotExist:
			parts = append(parts, "!"+r.Key)
		}
	}
	return strings.Join(parts, ",")
}

// validateLabelKey follows Kubernetes: an optional DNS-subdomain prefix and
// '/', then a name of at most 63 characters [A-Za-z0-9-_.] starting and
// ending alphanumeric.
func validateLabelKey(k string) error {
	if k == "" {
		return fmt.Errorf("label key must not be empty")
	}
	name := k
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		prefix := k[:i]
		name = k[i+1:]
		if prefix == "" || len(prefix) > 253 {
			return fmt.Errorf("label key %q: prefix must be 1-253 characters", k)
		}
		for _, c := range prefix {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				return fmt.Errorf("label key %q: prefix must be a lower-case DNS subdomain", k)
			}
		}
	}
	if err := labelToken(name); err != nil {
		return fmt.Errorf("label key %q: %v", k, err)
	}
	return nil
}

func validateLabelValue(v string) error {
	if v == "" {
		return nil
	}
	if err := labelToken(v); err != nil {
		return fmt.Errorf("label value %q: %v", v, err)
	}
	return nil
}

func labelToken(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("must be 1-63 characters")
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return fmt.Errorf("must start and end with a letter or digit")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("may only contain letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}

// ValidateLabels checks a device's label map with the Kubernetes rules.
func ValidateLabels(labels map[string]string) error {
	valid := true
	for k, v := range labels {
		if validateLabelKey(k) != nil || validateLabelValue(v) != nil {
			valid = false
			break
		}
	}
	if valid {
		return nil // the common case, without sorting (device info carries labels)
	}
	// Report the first bad label in key order, whatever the map order.
	for _, k := range sortedKeys(labels) {
		if err := validateLabelKey(k); err != nil {
			return err
		}
		if err := validateLabelValue(labels[k]); err != nil {
			return fmt.Errorf("label %q: %w", k, err)
		}
	}
	return nil
}

// SortedKeys returns the keys of m in ascending order: the only way map
// contents may reach an effect.
func SortedKeys[V any](m map[string]V) []string { return sortedKeys(m) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
