package sim_test

import (
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

func TestQuick(t *testing.T) {
	sc, err := scenario.Load("../scenarios/clean-upgrade-1k.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := time.Now()
	r, err := sim.Run(sc, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(st)
	t.Logf("events=%d sim=%vs wall=%v ev/s=%.0f passed=%v viol=%v exp=%+v conv=%v net=%v", r.Events, r.SimSeconds, el, float64(r.Events)/el.Seconds(), r.Passed, r.Violations, r.Expectations, r.ConvergedAtSeconds, r.Network)
}
