package core

import (
	"fmt"
	"testing"
)

// Encoding is byte-deterministic: the same value, with maps of many keys
// built in different insertion orders, encodes to identical bytes every time.
func TestEncodingIsByteDeterministic(t *testing.T) {
	build := func(round int) (WorkloadSpec, DeviceInfo) {
		w, d := sampleWorkload(), sampleDeviceInfo()
		w.Env, d.Labels = map[string]string{}, map[string]string{}
		for i := 0; i < 200; i++ {
			k := (i*7 + round*13) % 200 // a different insertion order each round
			w.Env[fmt.Sprintf("VAR_%03d", k)] = fmt.Sprint("value-", k)
			d.Labels[fmt.Sprintf("flotilla.dev/l%03d", k)] = fmt.Sprint("v", k)
		}
		return w, d
	}
	w0, d0 := build(0)
	wantW, err := w0.Encode()
	if err != nil {
		t.Fatal(err)
	}
	wantD, err := d0.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 100; round++ {
		w, d := build(round)
		gotW, err := w.Encode()
		if err != nil || string(gotW) != string(wantW) {
			t.Fatalf("round %d: workload spec encoding differs (%v)", round, err)
		}
		gotD, err := d.Encode()
		if err != nil || string(gotD) != string(wantD) {
			t.Fatalf("round %d: device info encoding differs (%v)", round, err)
		}
	}
	for _, c := range codecs() {
		for _, s := range c.samples {
			first, _ := c.encode(s)
			for i := 0; i < 100; i++ {
				if again, _ := c.encode(s); string(again) != string(first) {
					t.Fatalf("%s: encoding %d differs", c.kind, i)
				}
			}
		}
	}
}

func TestSortedKeys(t *testing.T) {
	got := SortedKeys(map[string]int{"b": 1, "a": 2, "c": 3, "": 4})
	if fmt.Sprint(got) != "[ a b c]" {
		t.Errorf("SortedKeys = %q", got)
	}
	if len(SortedKeys[int](nil)) != 0 {
		t.Error("nil map")
	}
}
