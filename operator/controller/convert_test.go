package controller

import (
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flotilla-fleet/flotilla/core"
	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

func TestAmountFromIntOrString(t *testing.T) {
	for _, tc := range []struct {
		in      intstr.IntOrString
		want    opcore.Amount
		wantErr bool
	}{
		{intstr.FromInt32(3), opcore.Amount{Value: 3}, false},
		{intstr.FromString("25%"), opcore.Amount{Value: 25, Percent: true}, false},
		{intstr.FromString("7"), opcore.Amount{Value: 7}, false},
		{intstr.FromString("lots"), opcore.Amount{}, true},
		{intstr.FromString("x%"), opcore.Amount{}, true},
	} {
		got, err := AmountFromIntOrString(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("%v: got %+v, %v", tc.in.String(), got, err)
		}
	}
}

func TestDeploymentToCore(t *testing.T) {
	thr := intstr.FromString("10%")
	d := &fleet.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: 4},
		Spec: fleet.DeploymentSpec{
			TargetSelector: fleet.LabelSelector{MatchLabels: fleet.MatchLabelsOf(map[string]string{"a": "b"}),
				MatchExpressions: []fleet.LabelSelectorRequirement{{Key: "t", Operator: "In", Values: []string{"x"}}}},
			Workload: fleet.WorkloadTemplate{Name: "w", Version: "1", Runtime: "process"},
			Rollout:  fleet.RolloutStrategy{Waves: []intstr.IntOrString{intstr.FromInt32(1), intstr.FromString("50%")}, FailureThreshold: &thr, Paused: true}}}
	s := DeploymentToCore(d)
	if s.Name != "web" || s.Generation != 4 || s.Deleting || s.Selector.String() != "a=b,t in (x)" ||
		s.Workload.Runtime != core.RuntimeProcess || len(s.Rollout.Waves) != 2 || !s.Rollout.Waves[1].Percent ||
		s.Rollout.FailureThreshold == nil || s.Rollout.FailureThreshold.Value != 10 || !s.Rollout.Paused {
		t.Fatalf("%+v", s)
	}
}

func TestApplyStatusKeepsTransitionTimesOfUnchangedConditions(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &fleet.Device{}
	st := opcore.DeviceStatus{CurrentVersion: core.MustParseVersion("v1.0.0"), Online: true, LastSeen: t1,
		Conditions: []opcore.Condition{{Type: opcore.CondOnline, Status: true, Reason: "HeartbeatReceived"}}}
	ApplyDeviceStatus(d, st, t1)
	ApplyDeviceStatus(d, st, t1.Add(time.Hour))
	c := apimeta.FindStatusCondition(d.Status.Conditions, opcore.CondOnline)
	if c == nil || !c.LastTransitionTime.Time.Equal(t1) || d.Status.CurrentVersion != "v1.0.0" || !d.Status.LastSeen.Time.Equal(t1) {
		t.Fatalf("%+v", d.Status)
	}
	st.Conditions[0] = opcore.Condition{Type: opcore.CondOnline, Reason: "HeartbeatStale"}
	ApplyDeviceStatus(d, st, t1.Add(2*time.Hour))
	c = apimeta.FindStatusCondition(d.Status.Conditions, opcore.CondOnline)
	if c.Status != metav1.ConditionFalse || !c.LastTransitionTime.Time.Equal(t1.Add(2*time.Hour)) {
		t.Fatalf("condition %+v", c)
	}
}
