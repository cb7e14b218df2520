package core

import (
	"fmt"
	"reflect"
	"strings"
)

// Valid sample messages shared by the table tests and the fuzz targets.

const sampleSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

var sampleSig = strings.Repeat("A", 86) + "==" // base64 of 64 zero bytes

func sampleWorkload() WorkloadSpec {
	return WorkloadSpec{
		Schema: SchemaVersion, Deployment: "web", Generation: 3, Name: "nginx", Version: "1.25.3",
		Runtime:  RuntimeProcess,
		Artifact: &ArtifactRef{Object: "nginx/1.25.3", SHA256: sampleSHA, Size: 1234, Signature: sampleSig},
		Args:     []string{"-g", "daemon off;"},
		Env:      map[string]string{"PORT": "8080", "MODE": "edge"},
	}
}

func sampleDeviceInfo() DeviceInfo {
	return DeviceInfo{
		Schema: SchemaVersion, Device: "edge-1", Labels: map[string]string{"site": "berlin", "flotilla.dev/tier": "edge"},
		AgentVersion: MustParseVersion("v1.2.3"), BootID: "0f1e2d3c",
		Inventory: Inventory{Hostname: "edge-1", OS: "linux", Arch: "arm64", Kernel: "6.1.0", CPUs: 4, MemoryBytes: 4 << 30},
		Runtimes:  []Runtime{RuntimeProcess, RuntimePodman}, ExecAllowed: true,
	}
}

func sampleDeviceState() DeviceState {
	return DeviceState{Schema: SchemaVersion, Device: "edge-1", Deployment: "web", Generation: 3, Version: "1.25.3",
		Phase: PhaseFailed, LastEventAt: 1_764_288_000_123, LastError: "exit status 1"}
}

func sampleHeartbeat() Heartbeat {
	return Heartbeat{Schema: SchemaVersion, AgentVersion: MustParseVersion("v1.2.3"), Seq: 42, UptimeSec: 3600, Attempt: 7}
}

func sampleMarker() UpgradeMarker {
	return UpgradeMarker{Schema: SchemaVersion, Attempt: 7, Rollout: "spring-2026", TargetVersion: MustParseVersion("v1.3.0"),
		Artifact:          ArtifactRef{URL: "https://releases.example.com/flotilla-agent-v1.3.0", SHA256: sampleSHA, Size: 20 << 20},
		CutoverTimeoutSec: 120}
}

func sampleStatus() UpgradeStatus {
	target := MustParseVersion("v1.3.0")
	return UpgradeStatus{Schema: SchemaVersion, Attempt: 7, Phase: UpgradeRolledBack, FromVersion: MustParseVersion("v1.2.3"),
		TargetVersion: &target, RunningVersion: MustParseVersion("v1.2.3"), Reason: ReasonCutoverTimeout,
		Detail: "no v1.3.0 heartbeat within 120s", At: 1_764_288_000_456}
}

func sampleRequests() []CommandRequest {
	return []CommandRequest{
		{Schema: SchemaVersion, Verb: VerbPing, ID: "r1"},
		{Schema: SchemaVersion, Verb: VerbLogs, ID: "r2", Logs: &LogsArgs{Deployment: "web", Lines: 50}},
		{Schema: SchemaVersion, Verb: VerbExec, Exec: &ExecArgs{Command: []string{"uname", "-a"}, TimeoutMS: 2000, MaxOutput: 4096}},
		{Schema: SchemaVersion, Verb: VerbUpgradeStop, UpgradeStop: &UpgradeStopArgs{Attempt: 7, TargetVersion: MustParseVersion("v1.3.0")}},
	}
}

func sampleReplies() []CommandReply {
	return []CommandReply{
		{Schema: SchemaVersion, Verb: VerbPing, ID: "r1", Ping: &PingResult{Device: "edge-1", AgentVersion: MustParseVersion("v1.2.3"), UptimeSec: 9, Candidate: true}},
		{Schema: SchemaVersion, Verb: VerbLogs, ID: "r2", Logs: &LogsResult{Lines: []string{"a", "b"}, Truncated: true}},
		{Schema: SchemaVersion, Verb: VerbExec, Exec: &ExecResult{ExitCode: 2, Stdout: "out", Stderr: "err", Truncated: true, TimedOut: true}},
		{Schema: SchemaVersion, Verb: VerbUpgradeStop, UpgradeStop: &UpgradeStopResult{Attempt: 7, CommittedTo: MustParseVersion("v1.3.0"), ExitingVersion: MustParseVersion("v1.2.3")}},
		{Schema: SchemaVersion, Verb: VerbExec, ID: "r5", Error: &CommandError{Code: ErrCodeDisabled, Message: "exec is disabled"}},
	}
}

// sameValue reports whether two decoded values are equal, treating nil and
// empty slices and maps alike (encoding/json's omitempty drops both); it
// returns a description of the first difference.
func sameValue(a, b any) (bool, string) {
	return sameRV(reflect.ValueOf(a), reflect.ValueOf(b), "")
}

func sameRV(a, b reflect.Value, path string) (bool, string) {
	if a.Type() != b.Type() {
		return false, fmt.Sprintf("%s: type %s vs %s", path, a.Type(), b.Type())
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil(), path + ": nil vs non-nil"
		}
		return sameRV(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if ok, why := sameRV(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); !ok {
				return false, why
			}
		}
		return true, ""
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false, fmt.Sprintf("%s: len %d vs %d", path, a.Len(), b.Len())
		}
		for i := 0; i < a.Len(); i++ {
			if ok, why := sameRV(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); !ok {
				return false, why
			}
		}
		return true, ""
	case reflect.Map:
		if a.Len() != b.Len() {
			return false, fmt.Sprintf("%s: len %d vs %d", path, a.Len(), b.Len())
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() {
				return false, fmt.Sprintf("%s[%v]: missing", path, k)
			}
			if ok, why := sameRV(a.MapIndex(k), bv, fmt.Sprintf("%s[%v]", path, k)); !ok {
				return false, why
			}
		}
		return true, ""
	case reflect.String:
		return a.String() == b.String(), fmt.Sprintf("%s: %q vs %q", path, a.String(), b.String())
	case reflect.Bool:
		return a.Bool() == b.Bool(), fmt.Sprintf("%s: %v vs %v", path, a.Bool(), b.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int(), fmt.Sprintf("%s: %d vs %d", path, a.Int(), b.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return a.Uint() == b.Uint(), fmt.Sprintf("%s: %d vs %d", path, a.Uint(), b.Uint())
	}
	panic("sameValue: unhandled kind " + a.Kind().String() + " at " + path)
}
