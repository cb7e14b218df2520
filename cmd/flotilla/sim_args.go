package main

import (
	"fmt"
	"strconv"
	"strings"
)

// argScan walks a subcommand's arguments, where flags (-x, --x, --x=v,
// --x v) and positional arguments may come in any order: one scanner for
// `sim run/replay/check` and `sim sweep/shrink`.
type argScan struct {
	args      []string
	i         int
	raw, name string // the current flag as given, and its name
	val       string
	hasVal    bool
}

// next moves to the next flag, appending positional arguments on the way
// to *files; false at the end.
func (s *argScan) next(files *[]string) bool {
	for ; s.i < len(s.args); s.i++ {
		a := s.args[s.i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			*files = append(*files, a)
			continue
		}
		s.raw = a
		s.name, s.val, s.hasVal = strings.Cut(strings.TrimLeft(a, "-"), "=")
		s.i++
		return true
	}
	return false
}

// value is the current flag's value: after '=' or the next argument.
func (s *argScan) value() (string, error) {
	if s.hasVal {
		return s.val, nil
	}
	if s.i >= len(s.args) {
		return "", fmt.Errorf("flag --%s needs a value", s.name)
	}
	s.i++
	return s.args[s.i-1], nil
}

func (s *argScan) str(dst *string) error {
	v, err := s.value()
	*dst = v
	return err
}

func (s *argScan) u64(dst *uint64) error {
	v, err := s.value()
	if err != nil {
		return err
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("--%s: want a non-negative integer, got %q", s.name, v)
	}
	*dst = n
	return nil
}

func (s *argScan) positive(dst *int) error {
	v, err := s.value()
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return fmt.Errorf("--%s: want a positive integer, got %q", s.name, v)
	}
	*dst = n
	return nil
}

func (s *argScan) unknown() error { return fmt.Errorf("unknown flag %s", s.raw) }
