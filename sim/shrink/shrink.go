// Package shrink reduces a failing simulation to a small scenario that
// still fails the same way: `flotilla sim shrink`. It tries fewer devices,
// fewer faults and steps and deployments, milder faults, a simpler artifact,
// a shorter horizon and fewer expectations, greedily, keeping every change
// after which the run (same seed) still fails with the same signature (the
// same invariant, or the same expectation). Every candidate goes through
// Marshal and the strict scenario loader, so what is written reproduces.
package shrink

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
	"github.com/flotilla-fleet/flotilla/sim/sweep"
)

// Config is one shrink.
type Config struct {
	File string
	Data []byte
	Seed uint64
	// Devices overrides the original fleet size when > 0.
	Devices int
	// Swarm first draws the seed's fault mix (as sweep --swarm did).
	Swarm bool
	// MaxRuns bounds the simulations tried (0: 400).
	MaxRuns int
	// Log, when set, gets one line per accepted reduction.
	Log io.Writer
	// Name is the regression's scenario name (default <name>-seed<N>).
	Name string
}

// Outcome is the smallest failing scenario found.
type Outcome struct {
	Scenario  *scenario.Scenario
	YAML      []byte
	Signature string
	Result    *sim.Result
	Original  *sim.Result
	From      *scenario.Scenario // the scenario before shrinking (as loaded)
	Runs      int
}

type shrinker struct {
	ctx   context.Context
	cfg   Config
	sig   string
	best  *scenario.Scenario
	bestR *sim.Result
	runs  int
	max   int
}

// Shrink reduces the failing run of cfg.Seed. It fails when the run does
// not fail to begin with.
func Shrink(ctx context.Context, cfg Config) (*Outcome, error) {
	sc, _, err := sweep.Prepare(cfg.File, cfg.Data, cfg.Seed, cfg.Swarm)
	if err != nil {
		return nil, err
	}
	sc.Seed = cfg.Seed
	if cfg.Devices > 0 {
		sc.Fleet.Devices = cfg.Devices
	}
	name := cfg.Name
	if name == "" {
		name = fmt.Sprintf("%s-seed%d", sc.Name, cfg.Seed)
	}
	sc.Description = fmt.Sprintf("Shrunk by `flotilla sim shrink` from %s seed %d.", sc.Name, cfg.Seed)
	sc.Name = name
	s := &shrinker{ctx: ctx, cfg: cfg, max: cfg.MaxRuns}
	if s.max <= 0 {
		s.max = 400
	}
	sc2, r, err := s.run(sc)
	if err != nil {
		return nil, fmt.Errorf("the original scenario does not reload: %w", err)
	}
	if r.Passed {
		return nil, fmt.Errorf("seed %d of %s passes: nothing to shrink", cfg.Seed, cfg.File)
	}
	s.sig = sweep.Signature(r)
	s.best, s.bestR = sc2, r
	s.logf("fails with %s (%d devices, %d faults, %d steps, %v)", s.sig, sc2.Fleet.Devices, len(sc2.Faults), len(sc2.Steps), sc2.Duration.D)
	for round := 0; round < 10 && s.runs < s.max && ctx.Err() == nil; round++ {
		before := s.size()
		s.devices()
		s.removeEach("fault", func(c *scenario.Scenario) int { return len(c.Faults) }, func(c *scenario.Scenario, i int) {
			c.Faults = slices.Delete(c.Faults, i, i+1)
		})
		s.removeEach("step", func(c *scenario.Scenario) int { return len(c.Steps) }, func(c *scenario.Scenario, i int) {
			c.Steps = slices.Delete(c.Steps, i, i+1)
		})
		s.removeEach("deployment", func(c *scenario.Scenario) int { return len(c.Deployments) }, removeDeployment)
		s.simplifyFaults()
		s.simplifySteps()
		s.labels()
		s.horizon()
		s.expectations()
		s.devices()
		if s.size() == before {
			break
		}
	}
	y, err := Marshal(s.best)
	if err != nil {
		return nil, err
	}
	return &Outcome{Scenario: s.best, YAML: y, Signature: s.sig, Result: s.bestR, Original: r, From: sc2, Runs: s.runs}, nil
}

func (s *shrinker) logf(format string, args ...any) {
	if s.cfg.Log != nil {
		fmt.Fprintf(s.cfg.Log, "shrink: "+format+"\n", args...)
	}
}

// size orders scenarios: smaller is simpler.
func (s *shrinker) size() int {
	b := s.best
	n := b.Fleet.Devices*1000 + len(b.Faults)*100 + len(b.Steps)*100 + len(b.Deployments)*100 + int(b.Duration.D/time.Minute)
	for _, f := range b.Faults {
		n += f.Count
		if f.Devices.Set {
			n += int(f.Devices.Value)
		}
	}
	return n
}

// run marshals sc, reloads it strictly and runs it with its seed.
func (s *shrinker) run(sc *scenario.Scenario) (*scenario.Scenario, *sim.Result, error) {
	y, err := Marshal(sc)
	if err != nil {
		return nil, nil, err
	}
	sc2, err := scenario.Parse(s.cfg.File, y)
	if err != nil {
		return nil, nil, err
	}
	s.runs++
	r, err := sim.Run(sc2, sim.Options{})
	if err != nil {
		return nil, nil, err
	}
	return sc2, r, nil
}

// try runs a changed copy of the best scenario and keeps it when it still
// fails the same way.
func (s *shrinker) try(what string, change func(c *scenario.Scenario) bool) bool {
	if s.runs >= s.max || s.ctx.Err() != nil {
		return false
	}
	c := clone(s.best)
	if !change(c) {
		return false
	}
	sc2, r, err := s.run(c)
	if err != nil || r.Passed || sweep.Signature(r) != s.sig {
		return false
	}
	s.best, s.bestR = sc2, r
	s.logf("%s: still fails (%d devices, %d faults, %d steps, %v)", what, sc2.Fleet.Devices, len(sc2.Faults), len(sc2.Steps), sc2.Duration.D)
	return true
}

// clone deep-copies a scenario through its YAML (the loader is the only
// constructor the world trusts).
func clone(sc *scenario.Scenario) *scenario.Scenario {
	y, err := Marshal(sc)
	if err != nil {
		panic(err)
	}
	c, err := scenario.Parse(sc.File, y)
	if err != nil {
		panic(fmt.Sprintf("shrink: a scenario that loaded no longer loads: %v\n%s", err, y))
	}
	return c
}

func (s *shrinker) devices() {
	n := s.best.Fleet.Devices
	var sizes []int
	for _, m := range []int{1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2000, 5000} {
		if m < n {
			sizes = append(sizes, m)
		}
	}
	if n > 1 && (len(sizes) == 0 || sizes[len(sizes)-1] < n/2) {
		sizes = append(sizes, n/2)
	}
	for _, m := range sizes {
		if s.try(fmt.Sprintf("%d devices", m), func(c *scenario.Scenario) bool { c.Fleet.Devices = m; return true }) {
			return
		}
	}
}

func (s *shrinker) removeEach(what string, count func(*scenario.Scenario) int, remove func(*scenario.Scenario, int)) {
	for i := count(s.best) - 1; i >= 0; i-- {
		if i >= count(s.best) {
			continue
		}
		s.try(fmt.Sprintf("without %s %d", what, i), func(c *scenario.Scenario) bool { remove(c, i); return true })
	}
}

func removeDeployment(c *scenario.Scenario, i int) {
	name := c.Deployments[i].Name
	c.Deployments = slices.Delete(c.Deployments, i, i+1)
	c.Steps = slices.DeleteFunc(c.Steps, func(st scenario.Step) bool {
		return st.UpdateDeployment != nil && st.UpdateDeployment.Name == name
	})
}

func (s *shrinker) simplifyFaults() {
	for i := range s.best.Faults {
		if i >= len(s.best.Faults) {
			return
		}
		f := s.best.Faults[i]
		if f.Count > 1 {
			s.try(fmt.Sprintf("fault %d count 1", i), func(c *scenario.Scenario) bool { c.Faults[i].Count = 1; return true })
		}
		if f.Devices.Set && !(f.Devices.Value == 1 && !f.Devices.Percent) {
			s.try(fmt.Sprintf("fault %d on 1 device", i), func(c *scenario.Scenario) bool {
				c.Faults[i].Devices = scenario.Amount{Value: 1, Set: true}
				return true
			})
		}
		if f.Rate.Set && f.Rate.P > 0.01 {
			s.try(fmt.Sprintf("fault %d at half the rate", i), func(c *scenario.Scenario) bool {
				c.Faults[i].Rate.P = float64(int(f.Rate.P*50*1000)) / 1000 / 100
				return c.Faults[i].Rate.P > 0
			})
		}
		if f.For.Set && f.For.D > 20*time.Second {
			s.try(fmt.Sprintf("fault %d half as long", i), func(c *scenario.Scenario) bool {
				c.Faults[i].For.D = (f.For.D / 2).Round(time.Second)
				return true
			})
		}
		if f.Down.Set && f.Down.D > 2*time.Second {
			s.try(fmt.Sprintf("fault %d down half as long", i), func(c *scenario.Scenario) bool {
				c.Faults[i].Down.D = (f.Down.D / 2).Round(time.Second)
				return true
			})
		}
		if f.Kind == scenario.FaultPowerCut && f.Lose != "lost" {
			s.try(fmt.Sprintf("fault %d loses writes (no torn ones)", i), func(c *scenario.Scenario) bool {
				c.Faults[i].Lose = "lost"
				return true
			})
		}
	}
}

func (s *shrinker) simplifySteps() {
	for i := range s.best.Steps {
		if i >= len(s.best.Steps) {
			return
		}
		st := s.best.Steps[i]
		if u := st.UpgradeAgent; u != nil {
			if u.Artifact != scenario.ArtifactHealthy {
				s.try(fmt.Sprintf("step %d healthy artifact", i), func(c *scenario.Scenario) bool {
					c.Steps[i].UpgradeAgent.Artifact = scenario.ArtifactHealthy
					return true
				})
			}
			if len(u.Strategy.Waves) > 0 {
				s.try(fmt.Sprintf("step %d one wave", i), func(c *scenario.Scenario) bool {
					c.Steps[i].UpgradeAgent.Strategy.Waves = nil
					return true
				})
			}
			if u.Strategy.FailureThreshold != nil {
				s.try(fmt.Sprintf("step %d no failure threshold", i), func(c *scenario.Scenario) bool {
					c.Steps[i].UpgradeAgent.Strategy.FailureThreshold = nil
					return true
				})
			}
			if len(u.Selector) > 0 {
				s.try(fmt.Sprintf("step %d no selector", i), func(c *scenario.Scenario) bool {
					c.Steps[i].UpgradeAgent.Selector = nil
					return true
				})
			}
		}
		if st.At.D > time.Second {
			s.try(fmt.Sprintf("step %d earlier", i), func(c *scenario.Scenario) bool {
				c.Steps[i].At.D = (st.At.D / 2).Round(time.Second)
				return true
			})
		}
	}
}

func (s *shrinker) labels() {
	for _, k := range sortedKeys(s.best.Fleet.Labels) {
		if len(s.best.Fleet.Labels[k]) > 1 {
			s.try("one value of label "+k, func(c *scenario.Scenario) bool {
				c.Fleet.Labels[k] = c.Fleet.Labels[k][:1]
				return true
			})
		}
		s.try("without label "+k, func(c *scenario.Scenario) bool {
			delete(c.Fleet.Labels, k)
			return true
		})
	}
}

// horizon shortens the run: first the duration down to what the schedule
// needs, then (for a safety invariant, where the convergence bound does
// not decide the verdict) the convergence bound with it.
func (s *shrinker) horizon() {
	s.try("shortest duration", func(c *scenario.Scenario) bool {
		need := c.FaultWindowEnd() + c.Expect.ConvergedWithin.D + time.Minute
		if need >= c.Duration.D {
			return false
		}
		c.Duration.D = need.Round(time.Minute)
		return true
	})
	if s.bestR == nil || len(s.bestR.Violations) == 0 || s.bestR.Violations[0].Invariant == 7 {
		return
	}
	at := time.Duration(s.bestR.Violations[0].AtSeconds * float64(time.Second))
	s.try("stop after the violation", func(c *scenario.Scenario) bool {
		end := c.FaultWindowEnd()
		cw := max(time.Minute, (at - end + time.Minute).Round(time.Minute))
		if cw >= c.Expect.ConvergedWithin.D {
			return false
		}
		c.Expect.ConvergedWithin.D = cw
		c.Duration.D = (end + cw + time.Minute).Round(time.Minute)
		return true
	})
}

func (s *shrinker) expectations() {
	s.try("only the failing expectation", func(c *scenario.Scenario) bool {
		e := c.Expect
		keep := scenario.Expect{ConvergedWithin: e.ConvergedWithin, Violations: e.Violations}
		// A failing expectation stays; everything else goes.
		for _, x := range s.bestR.Expectations {
			if x.Pass {
				continue
			}
			switch {
			case x.Name == "rolled_back":
				keep.RolledBack = e.RolledBack
			case x.Name == "upgrade_failed":
				keep.UpgradeFailed = e.UpgradeFailed
			case x.Name == "workloads_running":
				keep.WorkloadsRunning = e.WorkloadsRunning
			case x.Name == "rollout_paused":
				keep.RolloutPaused = e.RolloutPaused
			case len(x.Name) > 14 && x.Name[:14] == "agent_version ":
				if keep.AgentVersion == nil {
					keep.AgentVersion = map[string]scenario.Threshold{}
				}
				keep.AgentVersion[x.Name[14:]] = e.AgentVersion[x.Name[14:]]
			case len(x.Name) > 13 && x.Name[:13] == "faults_fired ":
				if keep.FaultsFired == nil {
					keep.FaultsFired = map[string]scenario.Threshold{}
				}
				keep.FaultsFired[x.Name[13:]] = e.FaultsFired[x.Name[13:]]
			}
		}
		changed := len(e.AgentVersion) != len(keep.AgentVersion) || len(e.FaultsFired) != len(keep.FaultsFired) ||
			(e.RolledBack == nil) != (keep.RolledBack == nil) || (e.UpgradeFailed == nil) != (keep.UpgradeFailed == nil) ||
			(e.WorkloadsRunning == nil) != (keep.WorkloadsRunning == nil) || (e.RolloutPaused == nil) != (keep.RolloutPaused == nil)
		c.Expect = keep
		return changed
	})
}
