package main

import (
	"errors"
	"reflect"
	"testing"
)

// Flags and files mix in any order; a bad flag is named in the error.
func TestSimArgsParse(t *testing.T) {
	f, err := parseSimArgs([]string{"a.yaml", "--seed=7", "b.yaml", "-devices", "30", "--json", "--trace", "t.txt"})
	if err != nil {
		t.Fatal(err)
	}
	want := simFlags{seed: 7, seedSet: true, devices: 30, json: true, trace: "t.txt", files: []string{"a.yaml", "b.yaml"}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("got %+v, want %+v", f, want)
	}
	d, err := parseDepthArgs([]string{"--seeds", "5", "x.yaml", "--keep-going", "--parallel=2", "--out", "dir"})
	if err != nil {
		t.Fatal(err)
	}
	if d.seeds != 5 || d.from != 1 || !d.keepGoing || d.parallel != 2 || d.out != "dir" || !reflect.DeepEqual(d.files, []string{"x.yaml"}) {
		t.Fatalf("got %+v", d)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"a.yaml", "--seed"}, "flag --seed needs a value"},
		{[]string{"--seed", "-3"}, `--seed: want a non-negative integer, got "-3"`},
		{[]string{"--devices=0"}, `--devices: want a positive integer, got "0"`},
		{[]string{"--colour", "red"}, "unknown flag --colour"},
	} {
		if _, err := parseSimArgs(tc.args); err == nil || err.Error() != tc.want {
			t.Errorf("parseSimArgs(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseDepthArgs([]string{"--seeds", "0"}); err == nil || err.Error() != "--seeds: want at least 1" {
		t.Errorf("--seeds 0: %v", err)
	}
	if _, err := parseDepthArgs([]string{"-h"}); !errors.Is(err, errHelp) {
		t.Errorf("-h: %v", err)
	}
}
