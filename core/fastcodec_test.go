package core

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The hand-built codecs (fastcodec.go) are checked against encoding/json,
// which remains the specification:
//   - FuzzEncodeFastPathAgreesWithMarshal: whenever a hand-built encoder
//     returns bytes, they are json.Marshal's bytes for the same value, valid
//     or not; and the canonical decoder reads valid ones back.
//   - FuzzDecodeCanonicalAgreesWithSlowPath: whenever a canonical decoder
//     accepts an input, the general decoder accepts it too, with a deeply
//     equal value.
//   - FuzzParseVersion compares ParseVersion and Version.String with the
//     implementations they replaced (refParseVersion, refVersionString).
//
// Their seed corpora are committed under testdata/fuzz and replay in plain
// `go test`.

// checkFastEncoder runs a hand-built encoder on v and compares its bytes
// with json.Marshal's.
func checkFastEncoder[T any, PT interface {
	*T
	validator
}](t *testing.T, kind string, v T, fast func(*T) ([]byte, bool), decodeFast func([]byte) (T, bool)) {
	t.Helper()
	got, ok := fast(&v)
	if !ok {
		return
	}
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: hand-built encoder wrote %s, json.Marshal failed: %v", kind, got, err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s: hand-built encoder differs from json.Marshal:\n got %s\nwant %s\nvalue %+v", kind, got, want, v)
	}
	if reflect.ValueOf(v).FieldByName("Schema").Int() != SchemaVersion || PT(&v).Validate() != nil {
		return
	}
	// A valid message in canonical form must take the fast decode path and
	// come back as the same bytes.
	back, ok := decodeFast(got)
	if !ok {
		// Only a version built in code can make a valid value encode to
		// something no decoder accepts ("v1.2.3-" from Pre: []string{""}).
		var slow T
		if err := decodeSlow(kind, "schema", got, PT(&slow)); err == nil {
			t.Fatalf("%s: canonical decoder rejects the canonical encoding %s", kind, got)
		}
		return
	}
	if again, ok := fast(&back); !ok || string(again) != string(got) {
		t.Fatalf("%s: canonical decode/encode is not the identity:\n%s\n%s", kind, got, again)
	}
}

func FuzzEncodeFastPathAgreesWithMarshal(f *testing.F) {
	f.Fuzz(func(t *testing.T, name, key, value, ver, text string, n int64, u uint64, bits uint16) {
		bit := func(i int) bool { return bits&(1<<i) != 0 }
		pick := func(i int, s string) string {
			if bit(i) {
				return s
			}
			return ""
		}
		v, err := ParseVersion(ver)
		if err != nil {
			// A version built in code: String formats the fields, which
			// may hold anything.
			v = Version{Major: u, Minor: uint64(n), Patch: uint64(bits)}
			if bit(0) {
				v.Pre = strings.Split(text, ".")
			}
			v.Build = pick(1, value)
			if got, want := v.String(), refVersionString(v); got != want {
				t.Fatalf("Version.String() = %q, the fmt-based version gives %q for %+v", got, want, v)
			}
		}
		schema := SchemaVersion
		if bit(15) {
			schema = int(n)
		}

		info := DeviceInfo{
			Schema: schema, Device: name, AgentVersion: v, BootID: pick(2, text),
			Inventory: Inventory{Hostname: pick(3, name), OS: pick(4, key), Arch: pick(5, value),
				Kernel: pick(6, text), MemoryBytes: u},
			ExecAllowed: bit(7),
		}
		if bit(8) {
			info.Inventory.CPUs = int(n)
		}
		if bit(9) {
			info.Labels = map[string]string{key: value, text: name, value: ""}
		} else if bit(10) {
			info.Labels = map[string]string{} // empty, not nil: omitted too
		}
		if bit(11) {
			info.Runtimes = []Runtime{Runtime(key), Runtime(value)}
		} else if bit(12) {
			info.Runtimes = []Runtime{}
		}
		checkFastEncoder(t, "device info", info, appendDeviceInfo, decodeDeviceInfoFast)

		state := DeviceState{Schema: schema, Device: name, Deployment: key, Generation: n, Version: pick(2, value),
			Phase: WorkloadPhase(pick(3, text)), LastEventAt: int64(u), LastError: pick(4, text)}
		checkFastEncoder(t, "device state", state, appendDeviceState, decodeDeviceStateFast)

		marker := UpgradeMarker{Schema: schema, Attempt: uint32(u), Rollout: pick(2, name), TargetVersion: v,
			Artifact: ArtifactRef{Object: pick(3, key), URL: pick(4, value), SHA256: text, Size: n,
				Signature: pick(5, name)},
			CutoverTimeoutSec: int(int32(n))}
		checkFastEncoder(t, "upgrade marker", marker, appendUpgradeMarker, decodeUpgradeMarkerFast)

		status := UpgradeStatus{Schema: schema, Attempt: uint32(u >> 3), Phase: AgentUpgradePhase(key),
			FromVersion: v, RunningVersion: v, Reason: UpgradeReason(pick(2, value)), Detail: pick(3, text), At: n}
		if bit(4) {
			target := v
			status.TargetVersion = &target
		}
		checkFastEncoder(t, "upgrade status", status, appendUpgradeStatus, decodeUpgradeStatusFast)
	})
}

// checkFastDecoder: if the canonical decoder accepts data, the general
// decoder (both its single-pass and its two-pass form) must accept it with
// a deeply equal value.
func checkFastDecoder[T any, PT interface {
	*T
	validator
}](t *testing.T, kind string, data []byte, fast func([]byte) (T, bool)) {
	t.Helper()
	got, ok := fast(data)
	if !ok {
		return
	}
	var slow, general T
	if err := decodeSlow(kind, "schema", data, PT(&slow)); err != nil {
		t.Fatalf("%s: canonical decoder accepted %q, the general decoder rejects it: %v", kind, data, err)
	}
	if !reflect.DeepEqual(got, slow) {
		t.Fatalf("%s: canonical decoder read %q as\n%#v\nthe general decoder as\n%#v", kind, data, got, slow)
	}
	if err := decode(kind, "schema", data, PT(&general)); err != nil || !reflect.DeepEqual(got, general) {
		t.Fatalf("%s: canonical decoder and decode() disagree on %q: %v", kind, data, err)
	}
}

func FuzzDecodeCanonicalAgreesWithSlowPath(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastDecoder[DeviceInfo](t, "device info", data, decodeDeviceInfoFast)
		checkFastDecoder[DeviceState](t, "device state", data, decodeDeviceStateFast)
		checkFastDecoder[UpgradeMarker](t, "upgrade marker", data, decodeUpgradeMarkerFast)
		checkFastDecoder[UpgradeStatus](t, "upgrade status", data, decodeUpgradeStatusFast)
	})
}

// TestFastPathsCoverSamples checks that the hand-built codecs do take the
// samples (the differential fuzz targets would pass vacuously otherwise)
// and that the public Encode/Decode agree with json.Marshal.
func TestFastPathsCoverSamples(t *testing.T) {
	idle := UpgradeStatus{Schema: SchemaVersion, Phase: UpgradeIdle, FromVersion: MustParseVersion("1.0.0"), RunningVersion: MustParseVersion("1.0.0")}
	bare := DeviceInfo{Schema: SchemaVersion, Device: "d", AgentVersion: MustParseVersion("1.0.0")}
	running := DeviceState{Schema: SchemaVersion, Device: "d", Deployment: "w", Phase: PhaseRunning}
	object := sampleMarker()
	object.Rollout, object.Artifact.URL, object.Artifact.Object, object.Artifact.Signature = "", "", "agent/v1.3.0", sampleSig
	check := func(name string, v any, fastOK bool, encoded []byte, err error, decodedOK bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := json.Marshal(v)
		if !fastOK || !decodedOK || string(encoded) != string(want) {
			t.Fatalf("%s: fast encode %v, fast decode %v\n got %s\nwant %s", name, fastOK, decodedOK, encoded, want)
		}
	}
	for _, d := range []DeviceInfo{sampleDeviceInfo(), bare} {
		_, fastOK := appendDeviceInfo(&d)
		b, err := d.Encode()
		_, decOK := decodeDeviceInfoFast(b)
		check("device info", d, fastOK, b, err, decOK)
	}
	for _, s := range []DeviceState{sampleDeviceState(), running} {
		_, fastOK := appendDeviceState(&s)
		b, err := s.Encode()
		_, decOK := decodeDeviceStateFast(b)
		check("device state", s, fastOK, b, err, decOK)
	}
	for _, m := range []UpgradeMarker{sampleMarker(), object} {
		_, fastOK := appendUpgradeMarker(&m)
		b, err := m.Encode()
		_, decOK := decodeUpgradeMarkerFast(b)
		check("upgrade marker", m, fastOK, b, err, decOK)
	}
	for _, s := range []UpgradeStatus{sampleStatus(), idle} {
		_, fastOK := appendUpgradeStatus(&s)
		b, err := s.Encode()
		_, decOK := decodeUpgradeStatusFast(b)
		check("upgrade status", s, fastOK, b, err, decOK)
	}
}

// TestFastEncoderFallsBack: strings that encoding/json escapes make the
// hand-built encoder give up, and Encode still writes json.Marshal's bytes.
func TestFastEncoderFallsBack(t *testing.T) {
	for _, detail := range []string{`say "hi"`, `a\b`, "<b>", "x&y", "tab\t", "café", "bad \xff utf-8", "\u2028"} {
		s := sampleStatus()
		s.Detail = detail
		if _, ok := appendUpgradeStatus(&s); ok {
			t.Errorf("detail %q: hand-built encoder did not give up", detail)
		}
		got, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(s)
		if string(got) != string(want) {
			t.Errorf("detail %q: Encode wrote %s, json.Marshal %s", detail, got, want)
		}
		back, err := DecodeUpgradeStatus(got)
		if err != nil {
			t.Fatalf("detail %q: %v", detail, err)
		}
		if _, ok := decodeUpgradeStatusFast(got); ok {
			t.Errorf("detail %q: canonical decoder accepted an escaped string %s", detail, got)
		}
		_ = back
	}
}

// fastDecodeSeeds are inputs one edit away from the canonical form, for the
// differential decode target: each must either take the fast path with the
// general path's value or be left to the general path.
func fastDecodeSeeds(t *testing.T) [][]any {
	t.Helper()
	enc := func(b []byte, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	info := enc(sampleDeviceInfo().Encode())
	state := enc(sampleDeviceState().Encode())
	marker := enc(sampleMarker().Encode())
	status := enc(sampleStatus().Encode())
	idle := sampleStatus()
	idle.Phase, idle.Attempt, idle.TargetVersion, idle.Reason, idle.Detail = UpgradeIdle, 0, nil, ReasonNone, ""
	idleEnc := enc(idle.Encode())
	var out [][]any
	for _, s := range []string{
		info, state, marker, status, idleEnc,
		// not canonical: spaces, trailing data, unknown or re-cased keys
		strings.Replace(status, `,"at":`, `, "at":`, 1),
		status + " ",
		status + "{}",
		strings.Replace(status, `"attempt"`, `"Attempt"`, 1),
		strings.Replace(status, `{"schema":1,`, `{"schema":1,"SCHEMA":2,`, 1),
		strings.Replace(status, `,"at":`, `,"detail":"again","at":`, 1),
		strings.Replace(info, `,"agent_version":`, `,"Labels":{"x":"y"},"agent_version":`, 1),
		// numbers: leading zeros, signs, fractions, exponents, range
		strings.Replace(status, `"attempt":7`, `"attempt":07`, 1),
		strings.Replace(status, `"attempt":7`, `"attempt":4294967296`, 1),
		strings.Replace(status, `"attempt":7`, `"attempt":4294967295`, 1),
		strings.Replace(status, `"attempt":7`, `"attempt":-7`, 1),
		strings.Replace(status, `"attempt":7`, `"attempt":7.0`, 1),
		strings.Replace(status, `"attempt":7`, `"attempt":7e0`, 1),
		strings.Replace(idleEnc, `"at":`, `"at":-`, 1),
		strings.Replace(idleEnc, `"at":`, `"at":-0`, 1),
		strings.Replace(status, `"at":1764288000456`, `"at":9223372036854775807`, 1),
		strings.Replace(status, `"at":1764288000456`, `"at":9223372036854775808`, 1),
		strings.Replace(status, `"at":1764288000456`, `"at":-9223372036854775808`, 1),
		strings.Replace(status, `"at":1764288000456`, `"at":18446744073709551616`, 1),
		strings.Replace(info, `"cpus":4`, `"cpus":-4`, 1),
		strings.Replace(info, `"memory_bytes":4294967296`, `"memory_bytes":18446744073709551615`, 1),
		strings.Replace(marker, `"cutover_timeout_s":120`, `"cutover_timeout_s":0120`, 1),
		strings.Replace(state, `"generation":3`, `"generation":00`, 1),
		// nulls, empty containers, escapes, bad versions and values
		strings.Replace(status, `"target_version":"v1.3.0"`, `"target_version":null`, 1),
		strings.Replace(info, `"labels":{"flotilla.dev/tier":"edge","site":"berlin"}`, `"labels":{}`, 1),
		strings.Replace(info, `"labels":{"flotilla.dev/tier":"edge","site":"berlin"}`, `"labels":{"site":"berlin","flotilla.dev/tier":"edge"}`, 1),
		strings.Replace(info, `"labels":{"flotilla.dev/tier":"edge","site":"berlin"}`, `"labels":{"site":"a","site":"b"}`, 1),
		strings.Replace(info, `"runtimes":["process","podman"]`, `"runtimes":[]`, 1),
		strings.Replace(info, `"runtimes":["process","podman"]`, `"runtimes":null`, 1),
		strings.Replace(info, `"exec_allowed":true`, `"exec_allowed":false`, 1),
		strings.Replace(info, `"exec_allowed":true`, `"exec_allowed":1`, 1),
		strings.Replace(info, `"inventory":{"hostname":"edge-1",`, `"inventory":{`, 1),
		strings.Replace(info, `"inventory":{"hostname":"edge-1",`, `"inventory":{,`, 1),
		strings.Replace(status, `no v1.3.0`, `no \u0076`, 1),
		strings.Replace(status, `no v1.3.0`, "no \xff", 1),
		strings.Replace(status, `no v1.3.0`, "no\tv", 1),
		strings.Replace(status, `"from_version":"v1.2.3"`, `"from_version":"v01.2.3"`, 1),
		strings.Replace(status, `"from_version":"v1.2.3"`, `"from_version":7`, 1),
		strings.Replace(status, `"Rolled`, `"Exploded`, 1),
		strings.Replace(state, `"last_error":"exit status 1"`, `"last_error":""`, 1),
		strings.Replace(marker, `"artifact":{"url"`, `"artifact":{"object":"a/1","url"`, 1),
		`{"schema":1,"attempt":0,"phase":"Idle","from_version":"1.0.0","running_version":"1.0.0","at":0}`,
		`{"schema":1,"device":"d","agent_version":"1.0.0","inventory":{}}`,
		`{"schema":1,"device":"d","deployment":"w","generation":0,"phase":"Running","last_event_at":0}`,
	} {
		out = append(out, []any{[]byte(s)})
	}
	return out
}

// fastEncodeSeeds cover every optional field, both version kinds, and
// strings that need escaping.
func fastEncodeSeeds() [][]any {
	return [][]any{
		{"edge-1", "Running", "podman", "v1.2.3", "exit status 1", int64(3), uint64(1764288000123), uint16(0xffff &^ (1 << 15))},
		{"edge-1", "Idle", "", "1.0.0", "", int64(0), uint64(0), uint16(0)},
		{"edge-1", "RolledBack", "CutoverTimeout", "v1.3.0-rc.1+b.7", "no heartbeat", int64(120), uint64(7 << 3), uint16(0x0ffc)},
		{"d", "k", "v", "not a version", "rc.1", int64(-1), uint64(1<<64 - 1), uint16(0x8fff)},
		{"a<b", "x&y", `"q"`, "", "café\xff", int64(-9223372036854775808), uint64(1 << 63), uint16(0x7fff)},
		{"d", "k", "v", "", "a.\u2028", int64(5), uint64(5), uint16(0x0003)},
		{"edge-1", "WaitingForStop", "", "v2.0.0", "", int64(86400), uint64(1), uint16(0x0a10)},
	}
}

// refParseVersion is ParseVersion as it was before it stopped allocating
// for MAJOR.MINOR.PATCH: the oracle for FuzzParseVersion.
func refParseVersion(s string) (Version, error) {
	bad := func(why string) (Version, error) {
		shown := s
		if len(shown) > MaxVersionLen+8 {
			shown = shown[:MaxVersionLen] + "..."
		}
		return Version{}, fmt.Errorf("invalid version %q: %s", shown, why)
	}
	if s == "" {
		return bad("must not be empty")
	}
	if len(s) > MaxVersionLen {
		return bad(fmt.Sprintf("longer than %d bytes", MaxVersionLen))
	}
	rest := strings.TrimPrefix(s, "v")
	var v Version
	v.raw = s
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		v.Build = rest[i+1:]
		rest = rest[:i]
		if v.Build == "" || !refIdentChars(v.Build, true) {
			return bad("build metadata must be dot-separated [0-9A-Za-z-] identifiers")
		}
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		pre := rest[i+1:]
		rest = rest[:i]
		if pre == "" {
			return bad("empty pre-release")
		}
		v.Pre = strings.Split(pre, ".")
		for _, id := range v.Pre {
			if id == "" || !refIdentChars(id, false) {
				return bad("pre-release identifiers must be non-empty [0-9A-Za-z-]")
			}
			if isNumeric(id) && len(id) > 1 && id[0] == '0' {
				return bad("numeric pre-release identifier with a leading zero")
			}
		}
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return bad("want MAJOR.MINOR.PATCH")
	}
	nums := [3]*uint64{&v.Major, &v.Minor, &v.Patch}
	names := [3]string{"major", "minor", "patch"}
	for i, p := range parts {
		if p == "" || !isNumeric(p) {
			return bad(names[i] + " must be a non-negative integer")
		}
		if len(p) > 1 && p[0] == '0' {
			return bad(names[i] + " has a leading zero")
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return bad(names[i] + " out of range")
		}
		*nums[i] = n
	}
	return v, nil
}

func refIdentChars(s string, dots bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || dots && c == '.'
		if !ok {
			return false
		}
	}
	if dots {
		for _, p := range strings.Split(s, ".") {
			if p == "" {
				return false
			}
		}
	}
	return true
}

// refVersionString is Version.String as it was before it stopped using fmt.
func refVersionString(v Version) string {
	if v.raw != "" {
		return v.raw
	}
	s := fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Pre) > 0 {
		s += "-" + strings.Join(v.Pre, ".")
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// TestParseVersionAgreesWithReference pins the edges of the hand-rolled
// MAJOR.MINOR.PATCH parsing: widths around uint64's 19-20 digits, leading
// zeros and misplaced separators.
func TestParseVersionAgreesWithReference(t *testing.T) {
	for _, s := range []string{
		"v1.2.3", "0.0.0", "1.2.3-rc.1+b.7", "9999999999999999999.0.0", "18446744073709551615.0.0",
		"18446744073709551616.0.0", "1.99999999999999999999.0", "1.0.018446744073709551615", "1.0.00",
		"1..3", ".1.2", "1.2.", "1.2.3.4", "v", "vv1.2.3", "1.2.3+", "1.2.3+a..b", "1.2.3-a..b", "1.2.3-01",
		"1.2.3-+b", "1.2.x", "-1.2.3", "+1.2.3", "1.2.3-α",
	} {
		v, err := ParseVersion(s)
		rv, rerr := refParseVersion(s)
		if fmt.Sprint(err) != fmt.Sprint(rerr) || !reflect.DeepEqual(v, rv) {
			t.Errorf("ParseVersion(%q) = %#v, %v; the reference gives %#v, %v", s, v, err, rv, rerr)
		}
	}
}

// TestFastCodecsKnowEveryField fails when a field is added to a message
// with a hand-built codec: fastcodec.go must learn it, or the encoder would
// silently drop it (the differential targets only set the fields they know).
func TestFastCodecsKnowEveryField(t *testing.T) {
	for _, tc := range []struct {
		v    any
		tags string
	}{
		{DeviceInfo{}, "schema device labels,omitempty agent_version boot_id,omitempty inventory runtimes,omitempty exec_allowed,omitempty"},
		{Inventory{}, "hostname,omitempty os,omitempty arch,omitempty kernel,omitempty cpus,omitempty memory_bytes,omitempty"},
		{DeviceState{}, "schema device deployment generation version,omitempty phase last_event_at last_error,omitempty"},
		{UpgradeMarker{}, "schema attempt rollout,omitempty target_version artifact cutover_timeout_s"},
		{ArtifactRef{}, "object,omitempty url,omitempty sha256 size signature,omitempty"},
		{UpgradeStatus{}, "schema attempt phase from_version target_version,omitempty running_version reason,omitempty detail,omitempty at"},
	} {
		typ := reflect.TypeOf(tc.v)
		var tags []string
		for i := 0; i < typ.NumField(); i++ {
			if f := typ.Field(i); f.IsExported() {
				tags = append(tags, f.Tag.Get("json"))
			}
		}
		if got := strings.Join(tags, " "); got != tc.tags {
			t.Errorf("%s fields changed: update its hand-built codec in fastcodec.go, then this list\n got %s\nwant %s", typ, got, tc.tags)
		}
	}
}
