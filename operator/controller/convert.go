package controller

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flotilla-fleet/flotilla/core"
	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// SelectorToCore converts an API selector.
func SelectorToCore(s fleet.LabelSelector) core.LabelSelector {
	out := core.LabelSelector{}
	if s.MatchLabels != nil {
		out.MatchLabels = make(map[string]string, len(s.MatchLabels))
		for k, v := range s.MatchLabels {
			out.MatchLabels[k] = string(v)
		}
	}
	for _, r := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, core.SelectorRequirement{
			Key: r.Key, Operator: core.SelectorOperator(r.Operator), Values: r.Values})
	}
	return out
}

// AmountFromIntOrString converts 3 or "25%". Malformed strings give an
// error naming the value (the API server's validation normally prevents
// them).
func AmountFromIntOrString(v intstr.IntOrString) (opcore.Amount, error) {
	if v.Type == intstr.Int {
		return opcore.Amount{Value: int(v.IntVal)}, nil
	}
	s := strings.TrimSpace(v.StrVal)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil {
			return opcore.Amount{}, fmt.Errorf("%q is not a percentage", v.StrVal)
		}
		return opcore.Amount{Value: n, Percent: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return opcore.Amount{}, fmt.Errorf("%q is neither a count nor a percentage", v.StrVal)
	}
	return opcore.Amount{Value: n}, nil
}

// StrategyToCore converts a rollout strategy.
func StrategyToCore(s fleet.RolloutStrategy) (opcore.Strategy, error) {
	out := opcore.Strategy{Paused: s.Paused}
	for i, w := range s.Waves {
		a, err := AmountFromIntOrString(w)
		if err != nil {
			return out, fmt.Errorf("rollout.waves[%d]: %w", i, err)
		}
		out.Waves = append(out.Waves, a)
	}
	if s.MaxUnavailable != nil {
		a, err := AmountFromIntOrString(*s.MaxUnavailable)
		if err != nil {
			return out, fmt.Errorf("rollout.maxUnavailable: %w", err)
		}
		out.MaxUnavailable = a
	}
	if s.FailureThreshold != nil {
		a, err := AmountFromIntOrString(*s.FailureThreshold)
		if err != nil {
			return out, fmt.Errorf("rollout.failureThreshold: %w", err)
		}
		out.FailureThreshold = &a
	}
	return out, nil
}

// ArtifactToCore converts an artifact reference.
func ArtifactToCore(a fleet.ArtifactRef) core.ArtifactRef {
	return core.ArtifactRef{Object: a.Object, URL: a.URL, SHA256: a.SHA256, Size: a.Size, Signature: a.Signature}
}

// DeploymentToCore converts a Deployment. A strategy that does not convert
// is passed as an invalid amount so the core reports it on the object.
func DeploymentToCore(d *fleet.Deployment) opcore.DeploymentSpec {
	w := d.Spec.Workload
	spec := opcore.DeploymentSpec{Name: d.Name, Generation: d.Generation,
		Selector: SelectorToCore(d.Spec.TargetSelector), Deleting: !d.DeletionTimestamp.IsZero(),
		Workload: opcore.Workload{Name: w.Name, Version: w.Version, Runtime: core.Runtime(w.Runtime),
			Image: w.Image, Args: w.Args, Env: w.Env}}
	if w.Artifact != nil {
		a := ArtifactToCore(*w.Artifact)
		spec.Workload.Artifact = &a
	}
	st, err := StrategyToCore(d.Spec.Rollout)
	if err != nil {
		st.Waves = []opcore.Amount{{Value: -1}}
	}
	spec.Rollout = st
	return spec
}

// DeviceToCore converts a Device.
func DeviceToCore(d *fleet.Device) opcore.DeviceRecord {
	rec := opcore.DeviceRecord{Name: d.Name, Labels: d.Labels, Blacklisted: d.Spec.Blacklisted,
		StopSentAttempt: uint32(max(0, d.Status.Upgrade.StopSentAttempt))}
	if v, err := core.ParseVersion(d.Status.CurrentVersion); err == nil {
		rec.CurrentVersion = v
	}
	if d.Status.LastSeen != nil {
		rec.LastSeen = d.Status.LastSeen.Time
	}
	return rec
}

// AgentRolloutToCore converts an AgentRollout.
func AgentRolloutToCore(r *fleet.AgentRollout) opcore.AgentRolloutSpec {
	spec := opcore.AgentRolloutSpec{Name: r.Name, Generation: r.Generation,
		Artifact: ArtifactToCore(r.Spec.Artifact), Selector: SelectorToCore(r.Spec.TargetSelector)}
	if v, err := core.ParseVersion(r.Spec.Version); err == nil {
		spec.Version = v
	}
	st, err := StrategyToCore(r.Spec.Rollout)
	if err != nil {
		st.Waves = []opcore.Amount{{Value: -1}}
	}
	spec.Rollout = st
	return spec
}

func setConditions(dst *[]metav1.Condition, conds []opcore.Condition, generation int64, now time.Time) {
	if *dst == nil {
		*dst = []metav1.Condition{}
	}
	for _, c := range conds {
		st := metav1.ConditionFalse
		if c.Status {
			st = metav1.ConditionTrue
		}
		reason := c.Reason
		if reason == "" {
			reason = "Unknown"
		}
		meta.SetStatusCondition(dst, metav1.Condition{Type: c.Type, Status: st, Reason: reason,
			Message: c.Message, ObservedGeneration: generation, LastTransitionTime: metav1.NewTime(now)})
	}
}

func wavesToAPI(ws []opcore.WaveStatus) []fleet.WaveStatus {
	out := make([]fleet.WaveStatus, 0, len(ws))
	for _, w := range ws {
		out = append(out, fleet.WaveStatus{Index: int32(w.Index), Devices: int32(w.Devices),
			Started: int32(w.Started), Done: int32(w.Done), Phase: string(w.Phase)})
	}
	return out
}

// ApplyDeploymentStatus writes s into d's status, keeping condition
// transition times that did not change.
func ApplyDeploymentStatus(d *fleet.Deployment, s opcore.DeploymentStatus, now time.Time) {
	c := s.Counts
	d.Status.ObservedGeneration = s.ObservedGeneration
	d.Status.Counts = fleet.DeploymentCounts{Total: int32(c.Total), Succeeded: int32(c.Succeeded),
		Failed: int32(c.Failed), Pending: int32(c.Pending), Unreported: int32(c.Unreported), Waiting: int32(c.Waiting)}
	d.Status.LastError = s.LastError
	d.Status.Waves = wavesToAPI(s.Waves)
	setConditions(&d.Status.Conditions, s.Conditions, d.Generation, now)
}

// ApplyDeviceStatus writes s into d's status.
func ApplyDeviceStatus(d *fleet.Device, s opcore.DeviceStatus, now time.Time) {
	d.Status.CurrentVersion = ""
	if !s.CurrentVersion.IsZero() {
		d.Status.CurrentVersion = s.CurrentVersion.String()
	}
	u := s.Upgrade
	d.Status.Upgrade = fleet.DeviceUpgradeStatus{Phase: string(u.Phase), Rollout: u.Rollout,
		Attempt: int64(u.Attempt), StopSentAttempt: int64(u.StopSentAttempt), Message: u.Message}
	if !u.Target.IsZero() {
		d.Status.Upgrade.TargetVersion = u.Target.String()
	}
	d.Status.LastSeen = nil
	if !s.LastSeen.IsZero() {
		t := metav1.NewTime(s.LastSeen)
		d.Status.LastSeen = &t
	}
	d.Status.Deployments = nil
	for _, dep := range s.Deployments {
		d.Status.Deployments = append(d.Status.Deployments, fleet.DeviceDeploymentPhase{
			Deployment: dep.Deployment, Phase: dep.Phase, Generation: dep.Generation, LastError: dep.LastError})
	}
	setConditions(&d.Status.Conditions, s.Conditions, d.Generation, now)
}

// ApplyAgentRolloutStatus writes s into r's status.
func ApplyAgentRolloutStatus(r *fleet.AgentRollout, s opcore.AgentRolloutStatus, now time.Time) {
	c := s.Counts
	r.Status.ObservedGeneration = s.ObservedGeneration
	r.Status.Counts = fleet.AgentRolloutCounts{Total: int32(c.Total), Succeeded: int32(c.Succeeded),
		Failed: int32(c.Failed), InProgress: int32(c.InProgress), Waiting: int32(c.Waiting)}
	r.Status.ByPhase = map[string]int32{}
	for k, v := range s.ByPhase {
		r.Status.ByPhase[k] = int32(v)
	}
	r.Status.LastError = s.LastError
	r.Status.Waves = wavesToAPI(s.Waves)
	setConditions(&r.Status.Conditions, s.Conditions, r.Generation, now)
}
