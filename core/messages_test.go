package core

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// codec drives one message kind generically: encode a sample, decode bytes.
type codec struct {
	kind    string // DecodeError.Kind
	schema  string // schema field name
	samples []any
	encode  func(any) ([]byte, error)
	decode  func([]byte) (any, error)
}

func codecs() []codec {
	reqs, reps := []any{}, []any{}
	for _, r := range sampleRequests() {
		reqs = append(reqs, r)
	}
	for _, r := range sampleReplies() {
		reps = append(reps, r)
	}
	return []codec{
		{"workload spec", "schema", []any{sampleWorkload()},
			func(v any) ([]byte, error) { return v.(WorkloadSpec).Encode() },
			func(b []byte) (any, error) { return DecodeWorkloadSpec(b) }},
		{"device info", "schema", []any{sampleDeviceInfo()},
			func(v any) ([]byte, error) { return v.(DeviceInfo).Encode() },
			func(b []byte) (any, error) { return DecodeDeviceInfo(b) }},
		{"device state", "schema", []any{sampleDeviceState()},
			func(v any) ([]byte, error) { return v.(DeviceState).Encode() },
			func(b []byte) (any, error) { return DecodeDeviceState(b) }},
		{"heartbeat", "v", []any{sampleHeartbeat()},
			func(v any) ([]byte, error) { return v.(Heartbeat).Encode() },
			func(b []byte) (any, error) { return DecodeHeartbeat(b) }},
		{"upgrade marker", "schema", []any{sampleMarker()},
			func(v any) ([]byte, error) { return v.(UpgradeMarker).Encode() },
			func(b []byte) (any, error) { return DecodeUpgradeMarker(b) }},
		{"upgrade status", "schema", []any{sampleStatus()},
			func(v any) ([]byte, error) { return v.(UpgradeStatus).Encode() },
			func(b []byte) (any, error) { return DecodeUpgradeStatus(b) }},
		{"command request", "schema", reqs,
			func(v any) ([]byte, error) { return v.(CommandRequest).Encode() },
			func(b []byte) (any, error) { return decodeAnyRequest(b) }},
		{"command reply", "schema", reps,
			func(v any) ([]byte, error) { return v.(CommandReply).Encode() },
			func(b []byte) (any, error) { return DecodeCommandReply(b) }},
	}
}

// decodeAnyRequest decodes a request as if it arrived on its own verb's
// subject (the verb is read from the body, or ping when it has none).
func decodeAnyRequest(b []byte) (CommandRequest, error) {
	verb := VerbPing
	for _, v := range Verbs {
		if strings.Contains(string(b), `"verb":"`+string(v)+`"`) {
			verb = v
		}
	}
	return DecodeCommandRequest(verb, b)
}

func TestMessagesRoundTrip(t *testing.T) {
	for _, c := range codecs() {
		for i, sample := range c.samples {
			t.Run(fmt.Sprintf("%s/%d", c.kind, i), func(t *testing.T) {
				b, err := c.encode(sample)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				got, err := c.decode(b)
				if err != nil {
					t.Fatalf("decode %s: %v", b, err)
				}
				if ok, why := sameValue(sample, got); !ok {
					t.Errorf("round trip changed the value: %s\nencoded: %s", why, b)
				}
				again, err := c.encode(got)
				if err != nil || string(again) != string(b) {
					t.Errorf("re-encoding differs:\n%s\n%s (%v)", b, again, err)
				}
			})
		}
	}
}

// A decoder rejects what it cannot understand, naming the field; a receiver
// logs the DecodeError and keeps running.
func TestDecodersRejectEnvelope(t *testing.T) {
	for _, c := range codecs() {
		good, err := c.encode(c.samples[0])
		if err != nil {
			t.Fatal(err)
		}
		s := string(good)
		schemaKV := fmt.Sprintf(`"%s":1`, c.schema)
		if !strings.Contains(s, schemaKV) {
			t.Fatalf("%s: encoding %s has no %s", c.kind, s, schemaKV)
		}
		cases := []struct {
			name, input, field, msg string
		}{
			{"empty", "", "", "empty message"},
			{"not JSON", "schema=1", "", "not a JSON object"},
			{"array", "[1]", "", "not a JSON object"},
			{"truncated", s[:len(s)-1], "", "not a JSON object"},
			{"trailing data", s + `{}`, "", "not a JSON object"},
			{"too large", `{"pad":"` + strings.Repeat("x", MaxMessageBytes) + `"}`, "", "the limit is 1048576"},
			{"missing schema", strings.Replace(s, schemaKV+",", "", 1), c.schema, "missing schema version"},
			{"unknown major schema", strings.Replace(s, schemaKV, fmt.Sprintf(`"%s":2`, c.schema), 1), c.schema, "unsupported schema version 2 (this build understands 1)"},
			{"schema zero", strings.Replace(s, schemaKV, fmt.Sprintf(`"%s":0`, c.schema), 1), c.schema, "unsupported schema version 0"},
			{"schema as string", strings.Replace(s, schemaKV, fmt.Sprintf(`"%s":"1"`, c.schema), 1), c.schema, "schema version must be an integer"},
			{"schema as float", strings.Replace(s, schemaKV, fmt.Sprintf(`"%s":1.5`, c.schema), 1), c.schema, "schema version must be an integer"},
			// encoding/json matches keys case-insensitively: a differently
			// cased schema key must not smuggle in another major version.
			{"case-folded schema key", strings.Replace(s, schemaKV, schemaKV+fmt.Sprintf(`,"%s":2`, strings.ToUpper(c.schema)), 1), strings.ToUpper(c.schema), "unsupported schema version 2"},
		}
		if c.schema == "schema" { // encoding/json also folds U+017F 'ſ' onto 's'
			cases = append(cases, struct{ name, input, field, msg string }{"long-s schema key",
				strings.Replace(s, schemaKV, schemaKV+`,"ſchema":2`, 1), "ſchema", "unsupported schema version 2"})
		}
		for _, tc := range cases {
			t.Run(c.kind+"/"+tc.name, func(t *testing.T) {
				_, err := c.decode([]byte(tc.input))
				checkDecodeError(t, err, c.kind, tc.field, tc.msg)
			})
		}
	}
}

// checkDecodeError asserts a DecodeError (or, for replies, the ErrBadReply
// CommandError wrapping its text) of kind naming field, saying msg.
func checkDecodeError(t *testing.T, err error, kind, field, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("decode accepted bad input")
	}
	if kind == "command reply" {
		if !errors.Is(err, ErrBadReply) {
			t.Fatalf("reply decode error %v is not ErrBadReply", err)
		}
		want := "decode command reply: "
		if field != "" {
			want += fmt.Sprintf("field %q: ", field)
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), msg) {
			t.Errorf("error %q, want it to contain %q and %q", err, want, msg)
		}
		return
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if de.Kind != kind || de.Field != field || !strings.Contains(de.Err.Error(), msg) {
		t.Errorf("got kind=%q field=%q err=%q; want kind=%q field=%q err containing %q", de.Kind, de.Field, de.Err, kind, field, msg)
	}
	if field != "" && !strings.Contains(err.Error(), fmt.Sprintf("field %q", field)) {
		t.Errorf("error text %q does not name the field", err)
	}
}

// Unknown fields are ignored so that an additive change (a new optional
// field) does not break an older reader.
func TestDecodersIgnoreUnknownFields(t *testing.T) {
	for _, c := range codecs() {
		good, _ := c.encode(c.samples[0])
		withExtra := `{"added_in_v1_7":{"x":[1,2]},` + string(good[1:])
		got, err := c.decode([]byte(withExtra))
		if err != nil {
			t.Errorf("%s: unknown field rejected: %v", c.kind, err)
			continue
		}
		if ok, why := sameValue(c.samples[0], got); !ok {
			t.Errorf("%s: unknown field changed the value: %s", c.kind, why)
		}
	}
}

type fieldCase struct {
	name  string
	input string
	field string
	msg   string
}

func runFieldCases(t *testing.T, kind string, decode func([]byte) (any, error), cases []fieldCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(kind+"/"+c.name, func(t *testing.T) {
			_, err := decode([]byte(c.input))
			checkDecodeError(t, err, kind, c.field, c.msg)
		})
	}
}

func TestDecodeWorkloadSpecRejects(t *testing.T) {
	art := `"artifact":{"object":"nginx/1.25","sha256":"` + sampleSHA + `","size":10}`
	base := func(extra string) string {
		return `{"schema":1,"deployment":"web","generation":1,"name":"nginx","version":"1.25"` + extra + `}`
	}
	runFieldCases(t, "workload spec", func(b []byte) (any, error) { return DecodeWorkloadSpec(b) }, []fieldCase{
		{"bad deployment", `{"schema":1,"deployment":"a.b","name":"n","version":"1"}`, "deployment", "must not contain '.'"},
		{"missing deployment", `{"schema":1,"name":"n","version":"1"}`, "deployment", "must not be empty"},
		{"deployment wrong type", `{"schema":1,"deployment":7,"name":"n","version":"1"}`, "deployment", "want string, got JSON number"},
		{"negative generation", base(`,"generation":-1`), "generation", "must not be negative"},
		{"generation wrong type", base(`,"generation":"1"`), "generation", "want int64, got JSON string"},
		{"empty name", `{"schema":1,"deployment":"web","name":"","version":"1"}`, "name", "must not be empty"},
		{"empty version", `{"schema":1,"deployment":"web","name":"n","version":""}`, "version", "must be 1-64 bytes"},
		{"version with space", `{"schema":1,"deployment":"web","name":"n","version":"1 2"}`, "version", "whitespace"},
		{"unknown runtime", base(`,"runtime":"docker"`), "runtime", `unknown runtime "docker"`},
		{"podman without image", base(`,"runtime":"podman"`), "image", "required for the podman runtime"},
		{"artifact without source", base(`,"artifact":{"sha256":"` + sampleSHA + `","size":1}`), "artifact.object", "one of object or url is required"},
		{"artifact bad sha", base(`,"artifact":{"object":"a/b","sha256":"abc","size":1}`), "artifact.sha256", "64 hex characters"},
		{"artifact size wrong type", base(`,"artifact":{"object":"a/b","sha256":"` + sampleSHA + `","size":"big"}`), "artifact.size", "want int64"},
		{"args wrong type", base(`,` + art + `,"args":"-v"`), "args", "want []string"},
		{"env bad name", base(`,"env":{"A=B":"x"}`), "env", `bad variable name "A=B"`},
		{"env value wrong type", base(`,"env":{"A":1}`), "env", "want string"},
	})
}

func TestDecodeDeviceInfoRejects(t *testing.T) {
	base := func(extra string) string {
		return `{"schema":1,"device":"edge-1","agent_version":"v1.2.3"` + extra + `}`
	}
	runFieldCases(t, "device info", func(b []byte) (any, error) { return DecodeDeviceInfo(b) }, []fieldCase{
		{"missing device", `{"schema":1,"agent_version":"v1.2.3"}`, "device", "must not be empty"},
		{"device not a KV key", `{"schema":1,"device":"café","agent_version":"v1.2.3"}`, "device", "NATS KV key characters"},
		{"missing agent version", `{"schema":1,"device":"edge-1"}`, "agent_version", "required"},
		{"malformed agent version", `{"schema":1,"device":"edge-1","agent_version":"1.2"}`, "agent_version", `invalid version "1.2"`},
		{"agent version wrong type", `{"schema":1,"device":"edge-1","agent_version":123}`, "agent_version", "version must be a string"},
		{"bad label", base(`,"labels":{"a b":"x"}`), "labels", `label key "a b"`},
		{"labels wrong type", base(`,"labels":["a"]`), "labels", "want map[string]string"},
		{"long boot id", base(`,"boot_id":"` + strings.Repeat("b", 65) + `"`), "boot_id", "longer than 64 bytes"},
		{"negative cpus", base(`,"inventory":{"cpus":-1}`), "inventory.cpus", "must not be negative"},
		{"memory wrong type", base(`,"inventory":{"memory_bytes":-1}`), "inventory.memory_bytes", "want uint64"},
		{"unknown runtime", base(`,"runtimes":["process","lxc"]`), "runtimes", `entry 1: unknown runtime "lxc"`},
		{"empty runtime", base(`,"runtimes":[""]`), "runtimes", `entry 0: unknown runtime ""`},
		{"exec_allowed wrong type", base(`,"exec_allowed":"yes"`), "exec_allowed", "want bool"},
	})
}

func TestDecodeDeviceStateRejects(t *testing.T) {
	base := func(extra string) string {
		return `{"schema":1,"device":"edge-1","deployment":"web","generation":1,"last_event_at":5` + extra + `}`
	}
	runFieldCases(t, "device state", func(b []byte) (any, error) { return DecodeDeviceState(b) }, []fieldCase{
		{"missing phase", base(``), "phase", `unknown phase ""`},
		{"unknown phase", base(`,"phase":"Crashed"`), "phase", `unknown phase "Crashed" (want one of [Pending Applying Running Failed])`},
		{"lower-case phase", base(`,"phase":"running"`), "phase", `unknown phase "running"`},
		{"phase wrong type", base(`,"phase":1`), "phase", "want core.WorkloadPhase, got JSON number"},
		{"bad device", `{"schema":1,"device":"a*","deployment":"web","phase":"Running"}`, "device", "wildcard"},
		{"bad deployment", `{"schema":1,"device":"a","deployment":"","phase":"Running"}`, "deployment", "must not be empty"},
		{"negative generation", base(`,"phase":"Running","generation":-2`), "generation", "must not be negative"},
		{"negative last_event_at", base(`,"phase":"Running","last_event_at":-1`), "last_event_at", "must not be negative"},
		{"last_event_at fractional", base(`,"phase":"Running","last_event_at":1.5`), "last_event_at", "want int64, got JSON number 1.5"},
		{"failed without error", base(`,"phase":"Failed"`), "last_error", "required when phase is Failed"},
		{"long error", base(`,"phase":"Failed","last_error":"` + strings.Repeat("e", MaxErrorLen+1) + `"`), "last_error", "longer than 1024 bytes"},
	})
}

func TestDecodeHeartbeatRejects(t *testing.T) {
	runFieldCases(t, "heartbeat", func(b []byte) (any, error) { return DecodeHeartbeat(b) }, []fieldCase{
		{"missing version", `{"v":1,"q":1}`, "av", "agent version required"},
		{"bad version", `{"v":1,"av":"one","q":1}`, "av", `invalid version "one"`},
		{"zero seq", `{"v":1,"av":"1.0.0","q":0}`, "q", "sequence numbers start at 1"},
		{"negative seq", `{"v":1,"av":"1.0.0","q":-1}`, "q", "want uint32, got JSON number -1"},
		{"seq overflows uint32", `{"v":1,"av":"1.0.0","q":4294967296}`, "q", "want uint32"},
		{"uptime wrong type", `{"v":1,"av":"1.0.0","q":1,"u":"1h"}`, "u", "want uint32, got JSON string"},
		{"attempt wrong type", `{"v":1,"av":"1.0.0","q":1,"a":true}`, "a", "want uint32, got JSON bool"},
		{"long schema key spelled out", `{"schema":1,"av":"1.0.0","q":1}`, "v", "missing schema version"},
	})
}

func TestDecodeUpgradeMarkerRejects(t *testing.T) {
	art := `"artifact":{"object":"flotilla-agent/v1.3.0","sha256":"` + sampleSHA + `","size":100}`
	base := func(extra string) string {
		return `{"schema":1,"attempt":3,"target_version":"v1.3.0","cutover_timeout_s":60` + extra + `}`
	}
	runFieldCases(t, "upgrade marker", func(b []byte) (any, error) { return DecodeUpgradeMarker(b) }, []fieldCase{
		{"zero attempt", `{"schema":1,"attempt":0,"target_version":"v1.3.0",` + art + `,"cutover_timeout_s":60}`, "attempt", "must be at least 1"},
		{"attempt wrong type", `{"schema":1,"attempt":"3"}`, "attempt", "want uint32"},
		{"bad rollout", base(`,"rollout":"a b",` + art), "rollout", "whitespace"},
		{"missing target", `{"schema":1,"attempt":3,` + art + `,"cutover_timeout_s":60}`, "target_version", "required"},
		{"malformed target", `{"schema":1,"attempt":3,"target_version":"latest",` + art + `,"cutover_timeout_s":60}`, "target_version", `invalid version "latest"`},
		{"missing artifact", base(``), "artifact.object", "one of object or url is required"},
		{"both object and url", base(`,"artifact":{"object":"a/b","url":"https://x/y","sha256":"` + sampleSHA + `","size":1}`), "artifact.url", "set object or url, not both"},
		{"http url", base(`,"artifact":{"url":"http://x/y","sha256":"` + sampleSHA + `","size":1}`), "artifact.url", "must be an https:// URL"},
		{"upper-case sha", base(`,"artifact":{"object":"a/b","sha256":"` + strings.ToUpper(sampleSHA) + `","size":1}`), "artifact.sha256", "lower-case hex"},
		{"non-hex sha", base(`,"artifact":{"object":"a/b","sha256":"` + strings.Repeat("g", 64) + `","size":1}`), "artifact.sha256", "must be hex"},
		{"zero size", base(`,"artifact":{"object":"a/b","sha256":"` + sampleSHA + `","size":0}`), "artifact.size", "must be between 1 and 268435456 bytes, got 0"},
		{"oversize", base(`,"artifact":{"object":"a/b","sha256":"` + sampleSHA + `","size":268435457}`), "artifact.size", "got 268435457"},
		{"bad signature", base(`,"artifact":{"object":"a/b","sha256":"` + sampleSHA + `","size":1,"signature":"c2ln"}`), "artifact.signature", "64 bytes"},
		{"version in artifact wrong type", base(`,"artifact":{"object":5}`), "artifact.object", "want string"},
		{"zero timeout", `{"schema":1,"attempt":3,"target_version":"v1.3.0",` + art + `}`, "cutover_timeout_s", "must be between 1 and 86400, got 0"},
		{"day-long timeout", base(`,` + art + `,"cutover_timeout_s":86401`), "cutover_timeout_s", "got 86401"},
	})
}

func TestDecodeUpgradeStatusRejects(t *testing.T) {
	base := func(phase, extra string) string {
		return `{"schema":1,"attempt":2,"phase":"` + phase + `","from_version":"v1.0.0","target_version":"v1.1.0","running_version":"v1.0.0","at":1` + extra + `}`
	}
	runFieldCases(t, "upgrade status", func(b []byte) (any, error) { return DecodeUpgradeStatus(b) }, []fieldCase{
		{"unknown phase", base("Exploded", ""), "phase", `unknown phase "Exploded"`},
		{"missing phase", `{"schema":1,"from_version":"v1.0.0","running_version":"v1.0.0"}`, "phase", `unknown phase ""`},
		{"in flight without attempt", `{"schema":1,"phase":"Staging","from_version":"v1.0.0","target_version":"v1.1.0","running_version":"v1.0.0"}`, "attempt", "required unless phase is Idle"},
		{"missing from", `{"schema":1,"phase":"Idle","running_version":"v1.0.0"}`, "from_version", "required"},
		{"in flight without target", `{"schema":1,"attempt":1,"phase":"Verifying","from_version":"v1.0.0","running_version":"v1.0.0"}`, "target_version", "required unless phase is Idle"},
		{"malformed target", `{"schema":1,"attempt":1,"phase":"Verifying","from_version":"v1.0.0","target_version":"v1","running_version":"v1.0.0"}`, "target_version", `invalid version "v1"`},
		{"missing running", `{"schema":1,"phase":"Idle","from_version":"v1.0.0"}`, "running_version", "required"},
		{"unknown reason", base("Failed", `,"reason":"Gremlins"`), "reason", `unknown reason "Gremlins"`},
		{"failed without reason", base("Failed", ""), "reason", "required when phase is Failed"},
		{"rolled back without reason", base("RolledBack", ""), "reason", "required when phase is RolledBack"},
		{"long detail", base("Staging", `,"detail":"`+strings.Repeat("d", MaxErrorLen+1)+`"`), "detail", "longer than 1024 bytes"},
		{"at wrong type", base("Staging", `,"at":"now"`), "at", "want int64"},
	})
}

func TestDecodeCommandRequestRejects(t *testing.T) {
	cases := []struct {
		name  string
		verb  Verb
		input string
		field string
		msg   string
	}{
		{"unknown verb", "reboot", `{"schema":1,"verb":"reboot"}`, "verb", `unknown verb "reboot" (want one of ping, logs, exec, upgrade-stop)`},
		{"verb disagrees with subject", VerbExec, `{"schema":1,"verb":"ping"}`, "verb", `body says "ping" but the subject says "exec"`},
		{"ping with arguments", VerbPing, `{"schema":1,"verb":"ping","logs":{}}`, "verb", "ping takes no arguments"},
		{"logs without args", VerbLogs, `{"schema":1,"verb":"logs"}`, "logs", "required for verb logs"},
		{"logs with exec args too", VerbLogs, `{"schema":1,"verb":"logs","logs":{},"exec":{"command":["x"]}}`, "logs", "and no other argument object"},
		{"logs bad deployment", VerbLogs, `{"schema":1,"verb":"logs","logs":{"deployment":"a b"}}`, "logs.deployment", "whitespace"},
		{"logs lines wrong type", VerbLogs, `{"schema":1,"verb":"logs","logs":{"lines":"all"}}`, "logs.lines", "want int"},
		{"exec without args", VerbExec, `{"schema":1,"verb":"exec"}`, "exec", "required for verb exec"},
		{"exec empty command", VerbExec, `{"schema":1,"verb":"exec","exec":{"command":[]}}`, "exec.command", "must name a program"},
		{"exec empty program", VerbExec, `{"schema":1,"verb":"exec","exec":{"command":["","-a"]}}`, "exec.command", "must name a program"},
		{"exec too many args", VerbExec, `{"schema":1,"verb":"exec","exec":{"command":["x"` + strings.Repeat(`,"a"`, MaxExecArgs) + `]}}`, "exec.command", "more than 64 arguments"},
		{"exec command as string", VerbExec, `{"schema":1,"verb":"exec","exec":{"command":"uname -a"}}`, "exec.command", "want []string"},
		{"upgrade-stop without args", VerbUpgradeStop, `{"schema":1,"verb":"upgrade-stop"}`, "upgrade_stop", "required for verb upgrade-stop"},
		{"upgrade-stop zero attempt", VerbUpgradeStop, `{"schema":1,"verb":"upgrade-stop","upgrade_stop":{"attempt":0,"target_version":"v1.0.0"}}`, "upgrade_stop.attempt", "must be at least 1"},
		{"upgrade-stop no target", VerbUpgradeStop, `{"schema":1,"verb":"upgrade-stop","upgrade_stop":{"attempt":1}}`, "upgrade_stop.target_version", "required"},
		{"upgrade-stop malformed target", VerbUpgradeStop, `{"schema":1,"verb":"upgrade-stop","upgrade_stop":{"attempt":1,"target_version":"x"}}`, "upgrade_stop.target_version", `invalid version "x"`},
		{"long id", VerbPing, `{"schema":1,"verb":"ping","id":"` + strings.Repeat("i", 129) + `"}`, "id", "longer than 128 bytes"},
		{"missing schema", VerbPing, `{"verb":"ping"}`, "schema", "missing schema version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeCommandRequest(c.verb, []byte(c.input))
			checkDecodeError(t, err, "command request", c.field, c.msg)
		})
	}
}

func TestDecodeCommandReplyRejects(t *testing.T) {
	runFieldCases(t, "command reply", func(b []byte) (any, error) { return DecodeCommandReply(b) }, []fieldCase{
		{"unknown verb", `{"schema":1,"verb":"reboot"}`, "verb", `unknown verb "reboot"`},
		{"unknown error code", `{"schema":1,"verb":"ping","error":{"code":"on-fire"}}`, "error.code", `unknown error code "on-fire"`},
		{"missing result", `{"schema":1,"verb":"logs"}`, "logs", "missing result for verb logs"},
		{"result of another verb", `{"schema":1,"verb":"exec","ping":{"device":"d","agent_version":"v1.0.0"}}`, "exec", "missing result for verb exec"},
		{"ping without version", `{"schema":1,"verb":"ping","ping":{"device":"d"}}`, "ping.agent_version", "required"},
		{"upgrade-stop incomplete", `{"schema":1,"verb":"upgrade-stop","upgrade_stop":{"attempt":1,"committed_to":"v1.1.0"}}`, "upgrade_stop.exiting_version", "required"},
		{"upgrade-stop zero attempt", `{"schema":1,"verb":"upgrade-stop","upgrade_stop":{"committed_to":"v1.1.0","exiting_version":"v1.0.0"}}`, "upgrade_stop.attempt", "must be at least 1"},
		{"exec output over the cap", `{"schema":1,"verb":"exec","exec":{"exit_code":0,"stdout":"` + strings.Repeat("o", MaxExecOutput) + `","stderr":"e"}}`, "exec", "output exceeds 262144 bytes"},
		{"exit code wrong type", `{"schema":1,"verb":"exec","exec":{"exit_code":"0"}}`, "exec.exit_code", "want int"},
		{"lines wrong type", `{"schema":1,"verb":"logs","logs":{"lines":"a"}}`, "logs.lines", "want []string"},
	})
}

func TestEncodeValidates(t *testing.T) {
	bad := []struct {
		name string
		enc  func() ([]byte, error)
		msg  string
	}{
		{"workload spec", func() ([]byte, error) { w := sampleWorkload(); w.Runtime = "docker"; return w.Encode() }, `encode workload spec: runtime: unknown runtime "docker"`},
		{"device info", func() ([]byte, error) { d := sampleDeviceInfo(); d.Device = ""; return d.Encode() }, "encode device info: device:"},
		{"device state", func() ([]byte, error) { s := sampleDeviceState(); s.Phase = "Gone"; return s.Encode() }, "encode device state: phase:"},
		{"heartbeat", func() ([]byte, error) { h := sampleHeartbeat(); h.Seq = 0; return h.Encode() }, "encode heartbeat: q: sequence numbers start at 1"},
		{"upgrade marker", func() ([]byte, error) { m := sampleMarker(); m.Attempt = 0; return m.Encode() }, "encode upgrade marker: attempt:"},
		{"upgrade status", func() ([]byte, error) { s := sampleStatus(); s.Reason = "Whatever"; return s.Encode() }, "encode upgrade status: reason:"},
		{"command request", func() ([]byte, error) { return CommandRequest{Verb: "reboot"}.Encode() }, "encode command request: verb:"},
		{"command reply", func() ([]byte, error) { return CommandReply{Verb: VerbLogs}.Encode() }, "encode command reply: logs: missing result"},
	}
	for _, c := range bad {
		b, err := c.enc()
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: Encode = %s, %v; want an error containing %q", c.name, b, err, c.msg)
		}
	}
}

// The enums a decoder accepts are exactly the documented ones.
func TestEnumsRoundTrip(t *testing.T) {
	for _, p := range WorkloadPhases {
		s := sampleDeviceState()
		s.Phase, s.LastError = p, "x"
		b, err := s.Encode()
		if err != nil {
			t.Fatalf("phase %s: %v", p, err)
		}
		if got, err := DecodeDeviceState(b); err != nil || got.Phase != p {
			t.Errorf("phase %s: got %v, %v", p, got.Phase, err)
		}
	}
	for _, p := range UpgradePhases {
		s := sampleStatus()
		s.Phase = p
		b, err := s.Encode()
		if err != nil {
			t.Fatalf("upgrade phase %s: %v", p, err)
		}
		if got, err := DecodeUpgradeStatus(b); err != nil || got.Phase != p {
			t.Errorf("upgrade phase %s: got %v, %v", p, got.Phase, err)
		}
	}
	for _, r := range upgradeReasons {
		s := sampleStatus()
		s.Phase, s.Reason = UpgradeStaging, r
		if _, err := s.Encode(); err != nil {
			t.Errorf("reason %q: %v", r, err)
		}
	}
	for _, code := range errorCodes {
		rep := ErrorReply(VerbPing, "id", code, "boom")
		b, err := rep.Encode()
		if err != nil {
			t.Fatalf("code %s: %v", code, err)
		}
		got, err := DecodeCommandReply(b)
		if err != nil || got.Error.Code != code {
			t.Errorf("code %s: %v, %v", code, got.Error, err)
		}
	}
}

func TestUpgradePhasePredicates(t *testing.T) {
	inflight := map[AgentUpgradePhase]bool{UpgradeStaging: true, UpgradeVerifying: true, UpgradeCutoverReady: true,
		UpgradeWaitingForStop: true, UpgradeReverting: true}
	for _, p := range UpgradePhases {
		if p.InFlight() != inflight[p] || p.Terminal() == inflight[p] {
			t.Errorf("%s: InFlight=%v Terminal=%v", p, p.InFlight(), p.Terminal())
		}
	}
	if AgentUpgradePhase("Bogus").InFlight() || AgentUpgradePhase("Bogus").Valid() {
		t.Error("unknown phase counted as valid or in flight")
	}
}

func TestStringSummaries(t *testing.T) {
	if got, want := sampleDeviceState().String(), "edge-1/web gen=3 Failed"; got != want {
		t.Errorf("DeviceState.String = %q, want %q", got, want)
	}
	if got, want := sampleStatus().String(), "attempt=7 RolledBack v1.2.3→v1.3.0 (CutoverTimeout)"; got != want {
		t.Errorf("UpgradeStatus.String = %q, want %q", got, want)
	}
	if got, want := (UpgradeStatus{Phase: UpgradeIdle, FromVersion: MustParseVersion("v1.0.0")}).String(), "attempt=0 Idle v1.0.0→-"; got != want {
		t.Errorf("idle String = %q, want %q", got, want)
	}
}

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{{"hello", 10, "hello"}, {"hello", 5, "hello"}, {"hello world", 8, "hello..."}, {"hello", 2, "he"}} {
		if got := Truncate(c.in, c.n); got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestWorkloadSpecEqual(t *testing.T) {
	a, b := sampleWorkload(), sampleWorkload()
	b.Env = map[string]string{"MODE": "edge", "PORT": "8080"} // same contents, built in another order
	if !a.Equal(b) {
		t.Error("equal specs compare unequal")
	}
	b.Generation++
	if a.Equal(b) {
		t.Error("a new generation compares equal")
	}
}
