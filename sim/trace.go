package sim

import (
	"fmt"
	"strings"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
)

// The canonical trace: every input delivered to a core and every effect it
// returned, as compact binary records hashed incrementally (SHA-256). The
// records carry the fields that matter for the protocol (attempts, phases,
// keys, revisions, versions), so two runs with the same hash made the same
// decisions in the same order at the same virtual times.

const (
	recAgent    byte = 1
	recOperator byte = 2
)

func (w *World) traceAgent(p *Proc, in agentcore.Input, effs []agentcore.Effect) {
	r := w.k.Record(recAgent).U(uint64(p.dev.idx)).U(uint64(p.pid))
	agentInput(r, in)
	r.U(uint64(len(effs)))
	for _, e := range effs {
		agentEffect(r, e)
	}
	r.Done()
	if w.k.Tracing() {
		var b strings.Builder
		fmt.Fprintf(&b, "%s[%d %s] <- %s", p.dev.name, p.pid, p.version, render(in))
		for _, e := range effs {
			b.WriteString("\n    -> ")
			b.WriteString(render(e))
		}
		w.k.TraceText(b.String())
	}
}

func (w *World) traceOperator(in opcore.Input, effs []opcore.Effect) {
	r := w.k.Record(recOperator).U(w.op.gen)
	opInput(r, in)
	r.U(uint64(len(effs)))
	for _, e := range effs {
		opEffect(r, e)
	}
	r.Done()
	if w.k.Tracing() {
		var b strings.Builder
		fmt.Fprintf(&b, "operator <- %s", render(in))
		for _, e := range effs {
			b.WriteString("\n    -> ")
			b.WriteString(render(e))
		}
		w.k.TraceText(b.String())
	}
}

func render(v any) string {
	s := fmt.Sprintf("%T %+v", v, v)
	s = strings.TrimPrefix(s, "agentcore.")
	s = strings.TrimPrefix(s, "opcore.")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

func agentInput(r *kernel.Rec, in agentcore.Input) {
	switch in := in.(type) {
	case agentcore.Start:
		r.U(1).U(uint64(in.CandidateAttempt)).U(uint64(len(in.Journal))).S(in.Current.String()).U(uint64(len(in.Installed)))
	case agentcore.TimerFired:
		r.U(2).S(string(in.Timer))
	case agentcore.DesiredPut:
		r.U(3).S(in.Deployment).U(in.Revision)
	case agentcore.DesiredInvalid:
		r.U(4).S(in.Deployment).U(in.Revision)
	case agentcore.DesiredDeleted:
		r.U(5).S(in.Deployment).U(in.Revision)
	case agentcore.MarkerPut:
		r.U(6).U(uint64(in.Marker.Attempt)).S(in.Marker.TargetVersion.String())
	case agentcore.MarkerInvalid:
		r.U(7)
	case agentcore.MarkerDeleted:
		r.U(8)
	case agentcore.WorkloadStatus:
		r.U(9).S(in.Deployment).I(in.Generation).S(string(in.Phase))
	case agentcore.CommandReceived:
		r.U(10).U(in.Handle).S(string(in.Verb))
		if in.Request.UpgradeStop != nil {
			r.U(uint64(in.Request.UpgradeStop.Attempt))
		}
	case agentcore.DownloadDone:
		r.U(11).U(uint64(in.Attempt)).S(string(in.Reason))
	case agentcore.SelfTestDone:
		r.U(12).U(uint64(in.Attempt)).S(in.Err)
	case agentcore.SwapDone:
		r.U(13).U(uint64(in.Attempt)).S(in.To.String()).S(in.Err)
	case agentcore.CandidateStarted:
		r.U(14).U(uint64(in.Attempt)).S(in.Err)
	case agentcore.CandidateExited:
		r.U(15).U(uint64(in.Attempt))
	case agentcore.PreserveDone:
		r.U(16).S(in.Version.String())
	case agentcore.JournalRead:
		r.U(17).U(uint64(len(in.Records)))
	default:
		r.U(99).S(fmt.Sprintf("%T", in))
	}
}

func agentEffect(r *kernel.Rec, e agentcore.Effect) {
	switch e := e.(type) {
	case agentcore.AppendJournal:
		r.U(1).S(string(e.Record.Kind)).U(uint64(e.Record.Attempt))
	case agentcore.PutHeartbeat:
		r.U(2).U(uint64(e.Heartbeat.Seq)).U(uint64(e.Heartbeat.Attempt)).S(e.Heartbeat.AgentVersion.String())
	case agentcore.PutDeviceInfo:
		r.U(3)
	case agentcore.PutDeviceState:
		r.U(4).S(e.State.Deployment).S(string(e.State.Phase)).I(e.State.Generation).I(e.State.LastEventAt)
	case agentcore.DeleteDeviceState:
		r.U(5).S(e.Deployment)
	case agentcore.PutUpgradeStatus:
		r.U(6).S(string(e.Status.Phase)).U(uint64(e.Status.Attempt)).S(string(e.Status.Reason)).I(e.Status.At)
	case agentcore.ArmTimer:
		r.U(7).S(string(e.Timer)).I(int64(e.After))
	case agentcore.CancelTimer:
		r.U(8).S(string(e.Timer))
	case agentcore.StartWorkload:
		r.U(9).S(e.Spec.Deployment).S(e.Spec.Version).I(e.Spec.Generation)
	case agentcore.StopWorkload:
		r.U(10).S(e.Deployment)
	case agentcore.Reply:
		r.U(11).U(e.Handle)
		if e.Reply.Error != nil {
			r.S(string(e.Reply.Error.Code))
		}
	case agentcore.Download:
		r.U(12).U(uint64(e.Attempt)).S(e.Version.String())
	case agentcore.SelfTest:
		r.U(13).U(uint64(e.Attempt))
	case agentcore.PreserveRunning:
		r.U(14).S(e.Version.String())
	case agentcore.SwapCurrent:
		r.U(15).U(uint64(e.Attempt)).S(e.To.String())
	case agentcore.StartCandidate:
		r.U(16).U(uint64(e.Attempt))
	case agentcore.StopCandidate:
		r.U(17).U(uint64(e.Attempt))
	case agentcore.RemoveVersion:
		r.U(18).S(e.Version.String())
	case agentcore.ReadJournal:
		r.U(19)
	case agentcore.Exit:
		r.U(20).I(int64(e.Code))
	case agentcore.Reexec:
		r.U(21).S(e.Version.String())
	case agentcore.Log:
		r.U(22).S(e.Msg)
	case agentcore.FetchLogs:
		r.U(23).U(e.Handle)
	case agentcore.RunExec:
		r.U(24).U(e.Handle)
	default:
		r.U(99).S(fmt.Sprintf("%T", e))
	}
}

func opInput(r *kernel.Rec, in opcore.Input) {
	switch in := in.(type) {
	case opcore.KVPut:
		r.U(1).S(in.Bucket).S(in.Key).U(in.Revision)
	case opcore.KVDelete:
		r.U(2).S(in.Bucket).S(in.Key).U(in.Revision)
	case opcore.KVReplayed:
		r.U(3).S(in.Bucket)
	case opcore.Tick:
		r.U(4)
	case opcore.CommandResult:
		r.U(5).S(in.Device).S(string(in.Verb)).U(uint64(in.Attempt)).S(string(in.Code))
	case opcore.DeploymentUpsert:
		r.U(6).S(in.Spec.Name).I(in.Spec.Generation)
	case opcore.DeviceUpsert:
		r.U(7).S(in.Device.Name)
		if in.Device.Blacklisted {
			r.U(1)
		}
	case opcore.AgentRolloutUpsert:
		r.U(8).S(in.Spec.Name).I(in.Spec.Generation)
	case opcore.CachesSynced:
		r.U(9)
	default:
		r.U(99).S(fmt.Sprintf("%T", in))
	}
}

func opEffect(r *kernel.Rec, e opcore.Effect) {
	switch e := e.(type) {
	case opcore.PutKV:
		r.U(1).S(e.Bucket).S(e.Key).B(e.Value)
	case opcore.DeleteKV:
		r.U(2).S(e.Bucket).S(e.Key)
	case opcore.SendCommand:
		r.U(3).S(e.Device).S(string(e.Request.Verb)).U(uint64(e.Attempt))
	case opcore.PatchDeploymentStatus:
		c := e.Status.Counts
		r.U(4).S(e.Name).I(int64(c.Total)).I(int64(c.Succeeded)).I(int64(c.Failed)).I(int64(c.Pending))
	case opcore.PatchDeviceStatus:
		r.U(5).S(e.Name).S(string(e.Status.Upgrade.Phase)).U(uint64(e.Status.Upgrade.Attempt)).S(e.Status.CurrentVersion.String())
	case opcore.PatchAgentRolloutStatus:
		c := e.Status.Counts
		r.U(6).S(e.Name).I(int64(c.Succeeded)).I(int64(c.Failed)).I(int64(c.InProgress)).I(int64(c.Waiting))
	case opcore.Notice:
		r.U(7).S(e.Reason).S(e.Name)
	case opcore.WakeAt:
		r.U(8).I(e.At.UnixNano())
	default:
		r.U(99).S(fmt.Sprintf("%T", e))
	}
}
