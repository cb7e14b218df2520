package shrink

import (
	"bytes"
	"sort"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Marshal writes sc as scenario YAML that the strict loader accepts (every
// value the loader defaulted is written out explicitly).
func Marshal(sc *scenario.Scenario) ([]byte, error) {
	root := mapping()
	add(root, "name", str(sc.Name))
	if sc.Description != "" {
		add(root, "description", str(sc.Description))
	}
	add(root, "duration", dur(sc.Duration.D))
	add(root, "seed", num(strconv.FormatUint(sc.Seed, 10)))

	fl := mapping()
	add(fl, "devices", num(strconv.Itoa(sc.Fleet.Devices)))
	if len(sc.Fleet.Labels) > 0 {
		lm := flowMapping()
		for _, k := range sortedKeys(sc.Fleet.Labels) {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, v := range sc.Fleet.Labels[k] {
				seq.Content = append(seq.Content, str(v))
			}
			add(lm, k, seq)
		}
		add(fl, "labels", lm)
	}
	add(fl, "agent_version", str(sc.Fleet.AgentVersion))
	add(fl, "heartbeat_interval", dur(sc.Fleet.HeartbeatInterval.D))
	if sc.Fleet.Prefix != "" && sc.Fleet.Prefix != "dev" {
		add(fl, "prefix", str(sc.Fleet.Prefix))
	}
	add(root, "fleet", fl)

	nw := flowMapping()
	add(nw, "latency", dur(sc.Network.Latency.D))
	add(nw, "jitter", dur(sc.Network.Jitter.D))
	add(root, "network", nw)

	op := flowMapping()
	optDur(op, "tick", sc.Operator.Tick)
	optDur(op, "attempt_timeout", sc.Operator.AttemptTimeout)
	optDur(op, "offline_after", sc.Operator.OfflineAfter)
	optDur(op, "cutover_timeout", sc.Operator.CutoverTimeout)
	if sc.Operator.CreateDevices {
		add(op, "create_devices", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	if len(op.Content) > 0 {
		add(root, "operator", op)
	}

	if len(sc.Deployments) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, d := range sc.Deployments {
			seq.Content = append(seq.Content, deployment(d))
		}
		add(root, "deployments", seq)
	}
	if len(sc.Steps) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, st := range sc.Steps {
			seq.Content = append(seq.Content, step(st))
		}
		add(root, "steps", seq)
	}
	if len(sc.Faults) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, f := range sc.Faults {
			seq.Content = append(seq.Content, fault(f))
		}
		add(root, "faults", seq)
	}
	add(root, "expect", expect(sc.Expect))

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mapping() *yaml.Node     { return &yaml.Node{Kind: yaml.MappingNode} }
func flowMapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle} }
func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
func num(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: s} }
func add(m *yaml.Node, k string, v *yaml.Node) {
	m.Content = append(m.Content, str(k), v)
}

// dur writes a duration the loader parses back exactly.
func dur(d time.Duration) *yaml.Node {
	neg := d < 0
	if neg {
		d = -d
	}
	s := d.String()
	switch {
	case d == 0:
		s = "0s"
	case d%time.Hour == 0:
		s = strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		s = strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		s = strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		s = strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	if neg {
		s = "-" + s
	}
	return str(s)
}

func optDur(m *yaml.Node, k string, d scenario.Duration) {
	if d.Set {
		add(m, k, dur(d.D))
	}
}

func amount(a scenario.Amount) *yaml.Node { return str(a.String()) }

func strMap(m map[string]string) *yaml.Node {
	n := flowMapping()
	for _, k := range sortedKeys(m) {
		add(n, k, str(m[k]))
	}
	return n
}

func strSeq(v []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, s := range v {
		n.Content = append(n.Content, str(s))
	}
	return n
}

func strategy(s scenario.Strategy) *yaml.Node {
	n := flowMapping()
	if len(s.Waves) > 0 {
		w := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, a := range s.Waves {
			w.Content = append(w.Content, amount(a))
		}
		add(n, "waves", w)
	}
	if s.MaxUnavailable.Set {
		add(n, "max_unavailable", amount(s.MaxUnavailable))
	}
	if s.FailureThreshold != nil {
		add(n, "failure_threshold", amount(*s.FailureThreshold))
	}
	return n
}

func deployment(d scenario.Deployment) *yaml.Node {
	n := flowMapping()
	add(n, "name", str(d.Name))
	if len(d.Selector) > 0 {
		add(n, "selector", strMap(d.Selector))
	}
	w := flowMapping()
	add(w, "name", str(d.Workload.Name))
	add(w, "version", str(d.Workload.Version))
	add(n, "workload", w)
	if d.Strategy != nil {
		add(n, "strategy", strategy(*d.Strategy))
	}
	return n
}

func selection(n *yaml.Node, devices scenario.Amount, names []string, sel map[string]string) {
	if devices.Set {
		add(n, "devices", amount(devices))
	}
	if len(names) > 0 {
		add(n, "names", strSeq(names))
	}
	if len(sel) > 0 {
		add(n, "selector", strMap(sel))
	}
}

func step(st scenario.Step) *yaml.Node {
	n := mapping()
	add(n, "at", dur(st.At.D))
	switch {
	case st.UpgradeAgent != nil:
		u := st.UpgradeAgent
		a := flowMapping()
		add(a, "name", str(u.Name))
		add(a, "version", str(u.Version))
		add(a, "artifact", str(u.Artifact))
		if len(u.Selector) > 0 {
			add(a, "selector", strMap(u.Selector))
		}
		add(a, "strategy", strategy(u.Strategy))
		add(n, "upgrade_agent", a)
	case st.UpdateDeployment != nil:
		u := st.UpdateDeployment
		a := flowMapping()
		add(a, "name", str(u.Name))
		add(a, "version", str(u.Version))
		if u.Selector != nil {
			add(a, "selector", strMap(u.Selector))
		}
		add(n, "update_deployment", a)
	case st.AddDeployment != nil:
		add(n, "add_deployment", deployment(*st.AddDeployment))
	case st.Blacklist != nil, st.Unblacklist != nil:
		s, key := st.Blacklist, "blacklist"
		if s == nil {
			s, key = st.Unblacklist, "unblacklist"
		}
		a := flowMapping()
		selection(a, s.Devices, s.Names, s.Selector)
		add(n, key, a)
	case st.SetLabels != nil:
		s := st.SetLabels
		a := flowMapping()
		selection(a, s.Devices, s.Names, s.Selector)
		add(a, "labels", strMap(s.Labels))
		add(n, "set_labels", a)
	case st.DeleteDeployment != "":
		add(n, "delete_deployment", str(st.DeleteDeployment))
	case st.DeleteAgentRollout != "":
		add(n, "delete_agent_rollout", str(st.DeleteAgentRollout))
	case st.DeleteDevices != nil:
		s := st.DeleteDevices
		a := flowMapping()
		selection(a, s.Devices, s.Names, s.Selector)
		add(n, "delete_devices", a)
	}
	return n
}

func fault(f scenario.Fault) *yaml.Node {
	n := flowMapping()
	add(n, "kind", str(f.Kind))
	if f.Rate.Set {
		add(n, "rate", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(f.Rate.P, 'f', -1, 64)})
	}
	optDur(n, "delay", f.Delay)
	if f.At.Set || f.At.D != 0 {
		add(n, "at", dur(f.At.D))
	}
	optDur(n, "for", f.For)
	selection(n, f.Devices, f.Names, f.Selector)
	if f.Direction != "" {
		add(n, "direction", str(f.Direction))
	}
	if f.When != "" {
		add(n, "when", str(f.When))
	}
	optDur(n, "down", f.Down)
	if f.Lose != "" {
		add(n, "lose", str(f.Lose))
	}
	if f.Behaviour != "" {
		add(n, "behaviour", str(f.Behaviour))
	}
	if f.DriftPPM != 0 {
		add(n, "drift_ppm", num(strconv.Itoa(f.DriftPPM)))
	}
	optDur(n, "by", f.By)
	if f.Count > 1 {
		add(n, "count", num(strconv.Itoa(f.Count)))
	}
	return n
}

func threshold(t scenario.Threshold) *yaml.Node { return str(t.Raw) }

func expect(e scenario.Expect) *yaml.Node {
	n := mapping()
	add(n, "converged_within", dur(e.ConvergedWithin.D))
	if len(e.AgentVersion) > 0 {
		m := flowMapping()
		for _, k := range sortedKeys(e.AgentVersion) {
			add(m, k, threshold(e.AgentVersion[k]))
		}
		add(n, "agent_version", m)
	}
	if e.WorkloadsRunning != nil {
		add(n, "workloads_running", threshold(*e.WorkloadsRunning))
	}
	if e.RolledBack != nil {
		add(n, "rolled_back", threshold(*e.RolledBack))
	}
	if e.UpgradeFailed != nil {
		add(n, "upgrade_failed", threshold(*e.UpgradeFailed))
	}
	if e.RolloutPaused != nil {
		add(n, "rollout_paused", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(*e.RolloutPaused)})
	}
	if len(e.FaultsFired) > 0 {
		m := flowMapping()
		for _, k := range sortedKeys(e.FaultsFired) {
			add(m, k, threshold(e.FaultsFired[k]))
		}
		add(n, "faults_fired", m)
	}
	if len(e.Violations) > 0 {
		add(n, "violations", strSeq(e.Violations))
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
