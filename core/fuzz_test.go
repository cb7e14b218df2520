package core

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Fuzz targets for every decoder and parser. Properties:
//   - no input makes them panic;
//   - a rejection is a typed error (DecodeError, ErrBadReply, KeyError);
//   - whatever decodes re-encodes, and re-decoding gives an equal value and
//     the same bytes (decode ∘ encode is the identity on accepted input).
//
// The seed corpus under testdata/fuzz/<FuzzName>/ runs in plain `go test`;
// `make -f mk/core.mk fuzz` (or `make fuzz`) explores further.

// roundTrip checks the decode → encode → decode property for one message.
func roundTrip[T any](t *testing.T, kind string, first T, err error, encode func(T) ([]byte, error), decode func([]byte) (T, error)) {
	t.Helper()
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) || de.Kind != kind {
			t.Fatalf("rejection is not a %s DecodeError: %T %v", kind, err, err)
		}
		return
	}
	b, err := encode(first)
	if err != nil {
		t.Fatalf("accepted %s does not re-encode: %v\nvalue: %+v", kind, err, first)
	}
	second, err := decode(b)
	if err != nil {
		t.Fatalf("re-encoded %s does not decode: %v\nencoding: %s", kind, err, b)
	}
	if ok, why := sameValue(first, second); !ok {
		t.Fatalf("%s changed across encode/decode: %s\nencoding: %s", kind, why, b)
	}
	again, err := encode(second)
	if err != nil || string(again) != string(b) {
		t.Fatalf("%s encoding is not a fixed point:\n%s\n%s (%v)", kind, b, again, err)
	}
}

func FuzzDecodeWorkloadSpec(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeWorkloadSpec(data)
		roundTrip(t, "workload spec", v, err, WorkloadSpec.Encode, DecodeWorkloadSpec)
	})
}

func FuzzDecodeDeviceInfo(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeDeviceInfo(data)
		roundTrip(t, "device info", v, err, DeviceInfo.Encode, DecodeDeviceInfo)
	})
}

func FuzzDecodeDeviceState(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeDeviceState(data)
		roundTrip(t, "device state", v, err, DeviceState.Encode, DecodeDeviceState)
	})
}

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeHeartbeat(data)
		roundTrip(t, "heartbeat", v, err, Heartbeat.Encode, DecodeHeartbeat)
		if err == nil {
			if b, _ := v.Encode(); len(b) > MaxHeartbeatBytes {
				t.Fatalf("accepted heartbeat re-encodes to %d bytes", len(b))
			}
		}
	})
}

func FuzzDecodeUpgradeMarker(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeUpgradeMarker(data)
		roundTrip(t, "upgrade marker", v, err, UpgradeMarker.Encode, DecodeUpgradeMarker)
	})
}

func FuzzDecodeUpgradeStatus(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeUpgradeStatus(data)
		roundTrip(t, "upgrade status", v, err, UpgradeStatus.Encode, DecodeUpgradeStatus)
	})
}

func FuzzDecodeCommandRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, verb string, data []byte) {
		v, err := DecodeCommandRequest(Verb(verb), data)
		roundTrip(t, "command request", v, err, CommandRequest.Encode,
			func(b []byte) (CommandRequest, error) { return DecodeCommandRequest(Verb(verb), b) })
		if err == nil {
			if v.Logs != nil && (v.Logs.Lines < 1 || v.Logs.Lines > MaxLogLines) {
				t.Fatalf("log lines %d not clamped", v.Logs.Lines)
			}
			if e := v.Exec; e != nil && (e.TimeoutMS < 1 || e.TimeoutMS > MaxExecTimeout || e.MaxOutput < 1 || e.MaxOutput > MaxExecOutput) {
				t.Fatalf("exec limits not clamped: %+v", e)
			}
		}
	})
}

func FuzzDecodeCommandReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeCommandReply(data)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("reply rejection is not ErrBadReply: %T %v", err, err)
			}
			return
		}
		b, err := v.Encode()
		if err != nil {
			t.Fatalf("accepted reply does not re-encode: %v", err)
		}
		second, err := DecodeCommandReply(b)
		if err != nil {
			t.Fatalf("re-encoded reply does not decode: %v\n%s", err, b)
		}
		if ok, why := sameValue(v, second); !ok {
			t.Fatalf("reply changed across encode/decode: %s\n%s", why, b)
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		// The allocation-free parser must agree exactly, errors included,
		// with the one it replaced.
		rv, rerr := refParseVersion(s)
		if fmt.Sprint(err) != fmt.Sprint(rerr) || !reflect.DeepEqual(v, rv) {
			t.Fatalf("ParseVersion(%q) = %#v, %v; the reference gives %#v, %v", s, v, err, rv, rerr)
		}
		if err == nil {
			w := v
			w.raw = ""
			if got, want := w.String(), refVersionString(w); got != want {
				t.Fatalf("String() of %#v = %q, the reference gives %q", w, got, want)
			}
		}
		if err != nil {
			if v.IsZero() == false {
				t.Fatalf("rejected %q but returned %+v", s, v)
			}
			return
		}
		if v.String() != s || v.IsZero() || len(s) > MaxVersionLen {
			t.Fatalf("ParseVersion(%q) = %+v (String %q)", s, v, v.String())
		}
		b, err := v.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Version
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatalf("JSON %s does not parse back: %v", b, err)
		}
		if ok, why := sameValue(v, back); !ok || back.Compare(v) != 0 {
			t.Fatalf("JSON round trip of %q: %s", s, why)
		}
	})
}

// FuzzVersionCompare checks that precedence is a total order.
func FuzzVersionCompare(f *testing.F) {
	f.Fuzz(func(t *testing.T, a, b, c string) {
		va, errA := ParseVersion(a)
		vb, errB := ParseVersion(b)
		vc, errC := ParseVersion(c)
		if errA != nil || errB != nil || errC != nil {
			return
		}
		if va.Compare(va) != 0 {
			t.Fatalf("%s != itself", a)
		}
		if va.Compare(vb) != -vb.Compare(va) {
			t.Fatalf("Compare not antisymmetric on %s, %s", a, b)
		}
		if va.Compare(vb) <= 0 && vb.Compare(vc) <= 0 && va.Compare(vc) > 0 {
			t.Fatalf("Compare not transitive: %s <= %s <= %s but %s > %s", a, b, c, a, c)
		}
	})
}

func keyRejection(t *testing.T, key string, err error) {
	t.Helper()
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != key {
		t.Fatalf("rejection of %q is not a KeyError for it: %T %v", key, err, err)
	}
}

func FuzzParseDesiredStateKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string) {
		d, p, err := ParseDesiredStateKey(key)
		if err != nil {
			keyRejection(t, key, err)
			return
		}
		if DesiredStateKey(d, p) != key || ValidateDeviceName(d) != nil || ValidateDeploymentName(p) != nil {
			t.Fatalf("%q parsed to %q/%q", key, d, p)
		}
	})
}

func FuzzParseDeviceStateKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string) {
		d, p, err := ParseDeviceStateKey(key)
		if err != nil {
			keyRejection(t, key, err)
			return
		}
		if DeviceStateKey(d, p) != key || ValidateDeviceName(d) != nil || ValidateDeploymentName(p) != nil {
			t.Fatalf("%q parsed to %q/%q", key, d, p)
		}
	})
}

func FuzzParseDeviceInfoKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string) {
		d, err := ParseDeviceInfoKey(key)
		if err != nil {
			keyRejection(t, key, err)
			return
		}
		if DeviceInfoKey(d) != key || ValidateDeviceName(d) != nil {
			t.Fatalf("%q parsed to %q", key, d)
		}
	})
}

func FuzzParseDeviceKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string) {
		d, err := ParseDeviceKey(key)
		if err != nil {
			keyRejection(t, key, err)
			return
		}
		if HeartbeatKey(d) != key || AgentUpgradeKey(d) != key || AgentUpgradeStatusKey(d) != key {
			t.Fatalf("%q parsed to %q", key, d)
		}
	})
}

func FuzzParseCommandSubject(f *testing.F) {
	f.Fuzz(func(t *testing.T, subject string) {
		d, v, err := ParseCommandSubject(subject)
		if err != nil {
			keyRejection(t, subject, err)
			return
		}
		if CommandSubject(d, v) != subject || !v.Valid() || ValidateDeviceName(d) != nil {
			t.Fatalf("%q parsed to %q/%q", subject, d, v)
		}
	})
}

// FuzzValidateName checks that every rejection names a rule and every
// accepted device name is usable as a KV key and subject token.
func FuzzValidateName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateDeviceName(name)
		if err != nil {
			var ne *NameError
			if !errors.As(err, &ne) || ne.Rule == "" {
				t.Fatalf("rejection of %q names no rule: %v", name, err)
			}
			return
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '/' || c == '=') {
				t.Fatalf("accepted %q with byte %q", name, c)
			}
		}
		if len(name) == 0 || len(name) > MaxNameLen {
			t.Fatalf("accepted %q", name)
		}
	})
}

// fuzzTargets lists every fuzz target; each has a committed seed corpus.
var fuzzTargets = []string{
	"FuzzDecodeWorkloadSpec", "FuzzDecodeDeviceInfo", "FuzzDecodeDeviceState", "FuzzDecodeHeartbeat",
	"FuzzDecodeUpgradeMarker", "FuzzDecodeUpgradeStatus", "FuzzDecodeCommandRequest", "FuzzDecodeCommandReply",
	"FuzzParseVersion", "FuzzVersionCompare", "FuzzParseDesiredStateKey", "FuzzParseDeviceStateKey",
	"FuzzParseDeviceInfoKey", "FuzzParseDeviceKey", "FuzzParseCommandSubject", "FuzzValidateName",
	"FuzzEncodeFastPathAgreesWithMarshal", "FuzzDecodeCanonicalAgreesWithSlowPath",
}

var writeCorpus = flag.Bool("write-seed-corpus", false, "rewrite the seed-* files of testdata/fuzz from the samples")

// TestSeedCorpus checks that every fuzz target has a seed corpus with valid
// and invalid examples; with -write-seed-corpus it regenerates the seeds.
func TestSeedCorpus(t *testing.T) {
	seeds := seedCorpus(t)
	for _, name := range fuzzTargets {
		dir := filepath.Join("testdata", "fuzz", name)
		if *writeCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
			for _, p := range old {
				os.Remove(p)
			}
			for i, args := range seeds[name] {
				body := "go test fuzz v1\n"
				for _, a := range args {
					switch a := a.(type) {
					case []byte:
						body += "[]byte(" + strconv.Quote(string(a)) + ")\n"
					case string:
						body += "string(" + strconv.Quote(a) + ")\n"
					case int64:
						body += "int64(" + strconv.FormatInt(a, 10) + ")\n"
					case uint64:
						body += "uint64(" + strconv.FormatUint(a, 10) + ")\n"
					case uint16:
						body += "uint16(" + strconv.FormatUint(uint64(a), 10) + ")\n"
					}
				}
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(files) < 4 {
			t.Errorf("%s: %d corpus files, want at least 4 (valid and invalid examples)", dir, len(files))
		}
	}
}

// seedCorpus builds the seed inputs: every sample encoded, plus damaged
// variants and hand-written invalid inputs.
func seedCorpus(t *testing.T) map[string][][]any {
	t.Helper()
	enc := func(b []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bad := func(good []byte, schema string) [][]any {
		s := string(good)
		return [][]any{
			{good},
			{[]byte(s[:len(s)/2])},
			{[]byte(`{"` + schema + `":2}`)},
			{[]byte(`{}`)},
			{[]byte(`null`)},
			{[]byte(`{"` + schema + `":1,"` + schema + `":"1"}`)},
			{[]byte(`{"` + schema + `":1,"SCHEMA":7,"V":7}`)},
			// valid, with a second, differently cased schema key: one
			// mutation away from smuggling in another major version
			{[]byte(`{"` + strings.ToUpper(schema) + `":1,` + s[1:])},
		}
	}
	c := map[string][][]any{}
	c["FuzzDecodeWorkloadSpec"] = append(bad(enc(sampleWorkload().Encode()), "schema"),
		[]any{[]byte(`{"schema":1,"deployment":"web","name":"n","version":"1","runtime":"podman","image":"nginx:1","env":{"A":""},"args":[]}`)},
		[]any{[]byte(`{"schema":1,"deployment":"web","name":"n","version":"1","artifact":{"url":"https://x/a","sha256":"` + sampleSHA + `","size":1}}`)},
		[]any{[]byte(`{"schema":1,"deployment":"web","name":"n","version":"1","runtime":"docker"}`)})
	c["FuzzDecodeDeviceInfo"] = append(bad(enc(sampleDeviceInfo().Encode()), "schema"),
		[]any{[]byte(`{"schema":1,"device":"d","agent_version":"1.0.0","labels":{},"runtimes":[]}`)},
		[]any{[]byte(`{"schema":1,"device":"d","agent_version":7}`)})
	c["FuzzDecodeDeviceState"] = append(bad(enc(sampleDeviceState().Encode()), "schema"),
		[]any{[]byte(`{"schema":1,"device":"d","deployment":"w","phase":"Running","last_event_at":1}`)},
		[]any{[]byte(`{"schema":1,"device":"d","deployment":"w","phase":"Crashed"}`)})
	c["FuzzDecodeHeartbeat"] = append(bad(enc(sampleHeartbeat().Encode()), "v"),
		[]any{[]byte(`{"v":1,"av":"v1.2.3-rrrrrrrrrrrrrrrrrrrrrrrrr","q":4294967295,"u":4294967295,"a":4294967295}`)},
		[]any{[]byte(`{"v":1,"av":"1.0.0","q":0}`)},
		[]any{[]byte(`{"v":1,"av":"1.0.0","q":-1}`)})
	c["FuzzDecodeUpgradeMarker"] = append(bad(enc(sampleMarker().Encode()), "schema"),
		[]any{[]byte(`{"schema":1,"attempt":1,"target_version":"1.0.0","artifact":{"object":"a/1.0.0","sha256":"` + sampleSHA + `","size":1,"signature":"` + sampleSig + `"},"cutover_timeout_s":1}`)},
		[]any{[]byte(`{"schema":1,"attempt":1,"target_version":"nope"}`)})
	status := sampleStatus()
	idle := UpgradeStatus{Phase: UpgradeIdle, FromVersion: status.FromVersion, RunningVersion: status.RunningVersion}
	c["FuzzDecodeUpgradeStatus"] = append(bad(enc(status.Encode()), "schema"),
		[]any{enc(idle.Encode())},
		[]any{[]byte(`{"schema":1,"phase":"Exploded","from_version":"1.0.0","running_version":"1.0.0"}`)})
	for _, r := range sampleRequests() {
		c["FuzzDecodeCommandRequest"] = append(c["FuzzDecodeCommandRequest"], []any{string(r.Verb), enc(r.Encode())})
	}
	c["FuzzDecodeCommandRequest"] = append(c["FuzzDecodeCommandRequest"],
		[]any{"logs", []byte(`{"schema":1,"verb":"logs","logs":{"lines":99999999}}`)},
		[]any{"exec", []byte(`{"schema":1,"verb":"exec","exec":{"command":["ls"],"timeout_ms":-1,"max_output":9999999999}}`)},
		[]any{"exec", []byte(`{"schema":1,"verb":"ping"}`)},
		[]any{"reboot", []byte(`{"schema":1,"verb":"reboot"}`)},
		[]any{"ping", []byte(`{"schema":2,"verb":"ping"}`)})
	for _, r := range sampleReplies() {
		c["FuzzDecodeCommandReply"] = append(c["FuzzDecodeCommandReply"], []any{enc(r.Encode())})
	}
	c["FuzzDecodeCommandReply"] = append(c["FuzzDecodeCommandReply"],
		[]any{[]byte(`{"schema":1,"verb":"ping","ping":{"device":"d"}}`)},
		[]any{[]byte(`{"schema":1,"verb":"logs","error":{"code":"on-fire"}}`)},
		[]any{[]byte(`{"schema":3}`)})
	for _, s := range []string{"v1.2.3", "1.0.0-rc.1+b.7", "1.0.0-99999999999999999999", "v1.2.3-rrrrrrrrrrrrrrrrrrrrrrrrr", "1.2", "01.2.3", "1.2.3-", "1.2.3+a..b", ""} {
		c["FuzzParseVersion"] = append(c["FuzzParseVersion"], []any{s})
	}
	for _, abc := range [][3]string{{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0"}, {"1.0.0-2", "1.0.0-10", "1.0.0-a"}, {"1.0.0-99999999999999999999", "1.0.0-100000000000000000000", "v1.0.0+x"}, {"2.0.0", "1.9.9", "bogus"}} {
		c["FuzzVersionCompare"] = append(c["FuzzVersionCompare"], []any{abc[0], abc[1], abc[2]})
	}
	keys := func(ss ...string) [][]any {
		var out [][]any
		for _, s := range ss {
			out = append(out, []any{s})
		}
		return out
	}
	c["FuzzParseDesiredStateKey"] = keys(DesiredStateKey("edge-1", "web"), "edge-1", "a.b.c", ".web", "edge.*", "café.web")
	c["FuzzParseDeviceStateKey"] = keys(DeviceStateKey("edge-1", "web"), "state.a", "status.a.b", "state.a.>", "state..")
	c["FuzzParseDeviceInfoKey"] = keys(DeviceInfoKey("edge-1"), "info.", "info.a.b", "edge-1", "info.a b")
	c["FuzzParseDeviceKey"] = keys("edge-1", "", "edge.1", "edge\x00", "site=a/rack_2")
	c["FuzzParseCommandSubject"] = keys(CommandSubject("edge-1", VerbPing), CommandSubject("edge-1", VerbUpgradeStop),
		"device-commands.edge-1.>", "device-commands.edge-1.reboot", "device-commands.edge-1", "commands.e.ping")
	c["FuzzEncodeFastPathAgreesWithMarshal"] = fastEncodeSeeds()
	c["FuzzDecodeCanonicalAgreesWithSlowPath"] = fastDecodeSeeds(t)
	c["FuzzValidateName"] = keys("edge-1", "", "a.b", "a*", "a b", "a\x7f", "caf\xc3", "café")
	return c
}
