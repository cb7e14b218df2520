package shrink

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Every library scenario survives Marshal → strict Parse unchanged: the
// re-parsed scenario marshals to the same bytes and simulates to the same
// trace hash (checked on a 30-device fleet to stay fast).
func TestMarshalRoundTripsTheLibrary(t *testing.T) {
	files, _ := filepath.Glob("../../scenarios/*.yaml")
	if len(files) < 12 {
		t.Fatalf("want the scenario library, found %d files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			sc, err := scenario.Load(f)
			if err != nil {
				t.Skipf("library scenario does not load (being edited?): %v", err)
			}
			b1, err := Marshal(sc)
			if err != nil {
				t.Fatal(err)
			}
			sc2, err := scenario.Parse(f, b1)
			if err != nil {
				t.Fatalf("marshalled scenario does not load: %v\n%s", err, b1)
			}
			b2, err := Marshal(sc2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b1, b2) {
				t.Fatalf("not a fixed point:\n%s\n---\n%s", b1, b2)
			}
			r1, err := sim.Run(sc, sim.Options{Devices: 30})
			if err != nil {
				t.Fatal(err)
			}
			r2, err := sim.Run(sc2, sim.Options{Devices: 30})
			if err != nil {
				t.Fatal(err)
			}
			if r1.TraceSHA256 != r2.TraceSHA256 {
				t.Fatalf("trace hash differs after the round trip: %s vs %s\n%s", r1.TraceSHA256, r2.TraceSHA256, b1)
			}
		})
	}
}
