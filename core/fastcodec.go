package core

import (
	"strconv"
)

// Hand-built codecs for the messages the fleet writes most: DeviceInfo,
// DeviceState, UpgradeMarker and UpgradeStatus (Heartbeat has its own in
// heartbeat.go). encoding/json's reflection dominated the simulator's
// profile, so these messages are written and read directly.
//
// The encoders produce exactly the bytes json.Marshal produces for the same
// value: fields in declaration order, omitempty honoured, label keys sorted.
// They only handle strings that encoding/json writes verbatim (printable
// ASCII other than '"', '\\' and the HTML characters '<', '>', '&'); any
// other string makes them give up, and Encode falls back to json.Marshal.
//
// The decoders accept only that canonical form: the encoder's key order,
// no whitespace, no escapes, no nulls, integers without leading zeros or
// signs they cannot carry, and a value that passes Validate. Anything else
// returns false and takes the general decoder, which is the specification:
// the fast path accepts a subset of its inputs and yields the same value
// (FuzzDecodeCanonicalAgreesWithSlowPath, FuzzEncodeFastPathAgreesWithMarshal).

// jsonVerbatim reports whether encoding/json writes s between quotes
// unchanged.
func jsonVerbatim(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// The encoders build a message in a stack buffer of this size and return
// an exact-size copy, as json.Marshal does: encoded values are kept (in KV
// histories, for one), so spare capacity would be retained memory. They
// are written append-style, with *ok cleared when a string needs escaping,
// so that the buffer does not escape to the heap.
const canonBufSize = 512

// appendStr appends s quoted, or clears *ok if encoding/json would escape it.
func appendStr(b []byte, s string, ok *bool) []byte {
	if !jsonVerbatim(s) {
		*ok = false
		return b
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendOptStr appends key and s unless s is empty (omitempty).
func appendOptStr(b []byte, key, s string, ok *bool) []byte {
	if s == "" {
		return b
	}
	return appendStr(append(b, key...), s, ok)
}

// appendKey appends key inside an object whose fields are all optional:
// preceded by a comma unless it is the first one written.
func appendKey(b []byte, key string, first *bool) []byte {
	if !*first {
		b = append(b, ',')
	}
	*first = false
	return append(b, key...)
}

// appendVersion appends what Version.MarshalJSON writes.
func appendVersion(b []byte, v Version, ok *bool) []byte { return appendStr(b, v.String(), ok) }

// canonResult is the encoders' return: an exact-size copy of b.
func canonResult(b []byte, ok bool) ([]byte, bool) {
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

func appendDeviceInfo(d *DeviceInfo) ([]byte, bool) {
	var buf [canonBufSize]byte
	ok := true
	b := append(buf[:0], `{"schema":`...)
	b = strconv.AppendInt(b, int64(d.Schema), 10)
	b = append(b, `,"device":`...)
	b = appendStr(b, d.Device, &ok)
	if len(d.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		// encoding/json sorts map keys by their UTF-8 bytes, as sortedKeys does.
		for i, k := range sortedKeys(d.Labels) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStr(b, k, &ok)
			b = append(b, ':')
			b = appendStr(b, d.Labels[k], &ok)
		}
		b = append(b, '}')
	}
	b = append(b, `,"agent_version":`...)
	b = appendVersion(b, d.AgentVersion, &ok)
	b = appendOptStr(b, `,"boot_id":`, d.BootID, &ok)
	b = append(b, `,"inventory":{`...)
	inv, first := &d.Inventory, true
	if inv.Hostname != "" {
		b = appendStr(appendKey(b, `"hostname":`, &first), inv.Hostname, &ok)
	}
	if inv.OS != "" {
		b = appendStr(appendKey(b, `"os":`, &first), inv.OS, &ok)
	}
	if inv.Arch != "" {
		b = appendStr(appendKey(b, `"arch":`, &first), inv.Arch, &ok)
	}
	if inv.Kernel != "" {
		b = appendStr(appendKey(b, `"kernel":`, &first), inv.Kernel, &ok)
	}
	if inv.CPUs != 0 {
		b = strconv.AppendInt(appendKey(b, `"cpus":`, &first), int64(inv.CPUs), 10)
	}
	if inv.MemoryBytes != 0 {
		b = strconv.AppendUint(appendKey(b, `"memory_bytes":`, &first), inv.MemoryBytes, 10)
	}
	b = append(b, '}')
	if len(d.Runtimes) > 0 {
		b = append(b, `,"runtimes":[`...)
		for i, r := range d.Runtimes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStr(b, string(r), &ok)
		}
		b = append(b, ']')
	}
	if d.ExecAllowed {
		b = append(b, `,"exec_allowed":true`...)
	}
	b = append(b, '}')
	return canonResult(b, ok)
}

func appendDeviceState(s *DeviceState) ([]byte, bool) {
	var buf [canonBufSize]byte
	ok := true
	b := append(buf[:0], `{"schema":`...)
	b = strconv.AppendInt(b, int64(s.Schema), 10)
	b = append(b, `,"device":`...)
	b = appendStr(b, s.Device, &ok)
	b = append(b, `,"deployment":`...)
	b = appendStr(b, s.Deployment, &ok)
	b = append(b, `,"generation":`...)
	b = strconv.AppendInt(b, s.Generation, 10)
	b = appendOptStr(b, `,"version":`, s.Version, &ok)
	b = append(b, `,"phase":`...)
	b = appendStr(b, string(s.Phase), &ok)
	b = append(b, `,"last_event_at":`...)
	b = strconv.AppendInt(b, s.LastEventAt, 10)
	b = appendOptStr(b, `,"last_error":`, s.LastError, &ok)
	b = append(b, '}')
	return canonResult(b, ok)
}

func appendUpgradeMarker(m *UpgradeMarker) ([]byte, bool) {
	var buf [canonBufSize]byte
	ok := true
	b := append(buf[:0], `{"schema":`...)
	b = strconv.AppendInt(b, int64(m.Schema), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendUint(b, uint64(m.Attempt), 10)
	b = appendOptStr(b, `,"rollout":`, m.Rollout, &ok)
	b = append(b, `,"target_version":`...)
	b = appendVersion(b, m.TargetVersion, &ok)
	b = append(b, `,"artifact":{`...)
	a := &m.Artifact
	// object and url are optional; sha256 always follows them.
	if a.Object != "" {
		b = append(appendStr(append(b, `"object":`...), a.Object, &ok), ',')
	}
	if a.URL != "" {
		b = append(appendStr(append(b, `"url":`...), a.URL, &ok), ',')
	}
	b = append(b, `"sha256":`...)
	b = appendStr(b, a.SHA256, &ok)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, a.Size, 10)
	b = appendOptStr(b, `,"signature":`, a.Signature, &ok)
	b = append(b, `},"cutover_timeout_s":`...)
	b = strconv.AppendInt(b, int64(m.CutoverTimeoutSec), 10)
	b = append(b, '}')
	return canonResult(b, ok)
}

func appendUpgradeStatus(s *UpgradeStatus) ([]byte, bool) {
	var buf [canonBufSize]byte
	ok := true
	b := append(buf[:0], `{"schema":`...)
	b = strconv.AppendInt(b, int64(s.Schema), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendUint(b, uint64(s.Attempt), 10)
	b = append(b, `,"phase":`...)
	b = appendStr(b, string(s.Phase), &ok)
	b = append(b, `,"from_version":`...)
	b = appendVersion(b, s.FromVersion, &ok)
	if s.TargetVersion != nil {
		b = append(b, `,"target_version":`...)
		b = appendVersion(b, *s.TargetVersion, &ok)
	}
	b = append(b, `,"running_version":`...)
	b = appendVersion(b, s.RunningVersion, &ok)
	b = appendOptStr(b, `,"reason":`, string(s.Reason), &ok)
	b = appendOptStr(b, `,"detail":`, s.Detail, &ok)
	b = append(b, `,"at":`...)
	b = strconv.AppendInt(b, s.At, 10)
	b = append(b, '}')
	return canonResult(b, ok)
}

// canonReader reads the canonical form. Any mismatch clears ok; the methods
// then return zero values and the caller discards the result. Like
// encoding/json, it copies each string field on its own, so that a decoded
// value does not keep the whole message alive; fields with a fixed set of
// values (phases, reasons, runtimes) share the constants instead.
type canonReader struct {
	s  []byte
	i  int
	ok bool
}

func newCanonReader(data []byte) canonReader {
	if len(data) > MaxMessageBytes {
		return canonReader{}
	}
	return canonReader{s: data, ok: true}
}

// lit consumes the literal l.
func (r *canonReader) lit(l string) {
	if !r.ok || len(r.s)-r.i < len(l) || string(r.s[r.i:r.i+len(l)]) != l {
		r.ok = false
		return
	}
	r.i += len(l)
}

// has consumes the literal l if it comes next.
func (r *canonReader) has(l string) bool {
	if r.ok && len(r.s)-r.i >= len(l) && string(r.s[r.i:r.i+len(l)]) == l {
		r.i += len(l)
		return true
	}
	return false
}

// rawStr reads a string that encoding/json would decode to its literal
// bytes, and returns those bytes (aliasing the input).
func (r *canonReader) rawStr() []byte {
	if !r.ok || r.i >= len(r.s) || r.s[r.i] != '"' {
		r.ok = false
		return nil
	}
	start := r.i + 1
	for j := start; j < len(r.s); j++ {
		switch c := r.s[j]; {
		case c == '"':
			r.i = j + 1
			return r.s[start:j]
		case c < 0x20 || c >= 0x80 || c == '\\':
			r.ok = false
			return nil
		}
	}
	r.ok = false
	return nil
}

func (r *canonReader) str() string { return string(r.rawStr()) }

// enum reads a string, returning the matching constant from known (no
// allocation) or, for a value Validate will reject, a copy.
func enum[T ~string](r *canonReader, known []T) T {
	b := r.rawStr()
	for _, k := range known {
		if string(b) == string(k) {
			return k
		}
	}
	return T(b)
}

var canonRuntimes = []Runtime{RuntimeProcess, RuntimePodman}

func (r *canonReader) version() Version {
	s := r.str()
	if !r.ok {
		return Version{}
	}
	v, err := ParseVersion(s)
	if err != nil {
		r.ok = false
	}
	return v
}

// digits reads a JSON integer without sign or leading zeros that fits in
// a uint64. JSON allows a fraction or exponent after it; the caller's next
// literal then fails to match.
func (r *canonReader) digits() uint64 {
	if !r.ok {
		return 0
	}
	n, j := uint64(0), r.i
	for ; j < len(r.s) && r.s[j] >= '0' && r.s[j] <= '9'; j++ {
		d := uint64(r.s[j] - '0')
		if n > (1<<64-1-d)/10 || (j > r.i && r.s[r.i] == '0') {
			r.ok = false
			return 0
		}
		n = n*10 + d
	}
	if j == r.i {
		r.ok = false
		return 0
	}
	r.i = j
	return n
}

// uint reads an unsigned integer no larger than max.
func (r *canonReader) uint(max uint64) uint64 {
	n := r.digits()
	if n > max {
		r.ok = false
		return 0
	}
	return n
}

// int64 reads a signed integer; "-0" is left to the general decoder.
func (r *canonReader) int64() int64 {
	if r.has("-") {
		n := r.digits()
		if n == 0 || n > 1<<63 {
			r.ok = false
			return 0
		}
		return int64(-n)
	}
	n := r.digits()
	if n > 1<<63-1 {
		r.ok = false
		return 0
	}
	return int64(n)
}

// int reads a signed integer that fits in an int.
func (r *canonReader) int() int {
	n := r.int64()
	if int64(int(n)) != n {
		r.ok = false
		return 0
	}
	return int(n)
}

// schema reads the opening of a message: the schema key, which must carry
// SchemaVersion, and the literal that follows it.
func (r *canonReader) schema(next string) {
	r.lit(`{"schema":`)
	if r.int() != SchemaVersion {
		r.ok = false
	}
	r.lit(next)
}

// end consumes the closing brace of the message and checks nothing follows.
func (r *canonReader) end() bool {
	r.lit("}")
	return r.ok && r.i == len(r.s)
}

func decodeDeviceInfoFast(data []byte) (DeviceInfo, bool) {
	r := newCanonReader(data)
	r.schema(`,"device":`)
	d := DeviceInfo{Schema: SchemaVersion}
	d.Device = r.str()
	if r.has(`,"labels":{`) {
		d.Labels = make(map[string]string)
		prev := ""
		for first := true; r.ok; first = false {
			if !first && !r.has(",") {
				break
			}
			k := r.str()
			r.lit(":")
			// Strictly ascending keys, as the encoder writes them: no
			// duplicates whose last-one-wins rule the general path owns.
			if !first && k <= prev {
				r.ok = false
			}
			d.Labels[k] = r.str()
			prev = k
		}
		r.lit("}")
	}
	r.lit(`,"agent_version":`)
	d.AgentVersion = r.version()
	if r.has(`,"boot_id":`) {
		d.BootID = r.str()
	}
	r.lit(`,"inventory":{`)
	// Every inventory field is optional; all but the first written are
	// preceded by a comma.
	first := true
	optField := func(key string) bool {
		at := r.i
		if (first || r.has(",")) && r.has(key) {
			first = false
			return true
		}
		r.i = at
		return false
	}
	inv := &d.Inventory
	if optField(`"hostname":`) {
		inv.Hostname = r.str()
	}
	if optField(`"os":`) {
		inv.OS = r.str()
	}
	if optField(`"arch":`) {
		inv.Arch = r.str()
	}
	if optField(`"kernel":`) {
		inv.Kernel = r.str()
	}
	if optField(`"cpus":`) {
		inv.CPUs = r.int()
	}
	if optField(`"memory_bytes":`) {
		inv.MemoryBytes = r.uint(1<<64 - 1)
	}
	r.lit("}")
	if r.has(`,"runtimes":[`) {
		d.Runtimes = make([]Runtime, 0, 2)
		for first := true; r.ok; first = false {
			if !first && !r.has(",") {
				break
			}
			d.Runtimes = append(d.Runtimes, enum(&r, canonRuntimes))
		}
		r.lit("]")
	}
	if r.has(`,"exec_allowed":`) {
		d.ExecAllowed = r.has("true")
		if !d.ExecAllowed {
			r.lit("false")
		}
	}
	if !r.end() || d.Validate() != nil {
		return DeviceInfo{}, false
	}
	return d, true
}

func decodeDeviceStateFast(data []byte) (DeviceState, bool) {
	r := newCanonReader(data)
	r.schema(`,"device":`)
	s := DeviceState{Schema: SchemaVersion}
	s.Device = r.str()
	r.lit(`,"deployment":`)
	s.Deployment = r.str()
	r.lit(`,"generation":`)
	s.Generation = r.int64()
	if r.has(`,"version":`) {
		s.Version = r.str()
	}
	r.lit(`,"phase":`)
	s.Phase = enum(&r, WorkloadPhases)
	r.lit(`,"last_event_at":`)
	s.LastEventAt = r.int64()
	if r.has(`,"last_error":`) {
		s.LastError = r.str()
	}
	if !r.end() || s.Validate() != nil {
		return DeviceState{}, false
	}
	return s, true
}

func decodeUpgradeMarkerFast(data []byte) (UpgradeMarker, bool) {
	r := newCanonReader(data)
	r.schema(`,"attempt":`)
	m := UpgradeMarker{Schema: SchemaVersion}
	m.Attempt = uint32(r.uint(1<<32 - 1))
	if r.has(`,"rollout":`) {
		m.Rollout = r.str()
	}
	r.lit(`,"target_version":`)
	m.TargetVersion = r.version()
	r.lit(`,"artifact":{`)
	a := &m.Artifact
	if r.has(`"object":`) {
		a.Object = r.str()
		r.lit(",")
	}
	if r.has(`"url":`) {
		a.URL = r.str()
		r.lit(",")
	}
	r.lit(`"sha256":`)
	a.SHA256 = r.str()
	r.lit(`,"size":`)
	a.Size = r.int64()
	if r.has(`,"signature":`) {
		a.Signature = r.str()
	}
	r.lit(`},"cutover_timeout_s":`)
	m.CutoverTimeoutSec = r.int()
	if !r.end() || m.Validate() != nil {
		return UpgradeMarker{}, false
	}
	return m, true
}

func decodeUpgradeStatusFast(data []byte) (UpgradeStatus, bool) {
	r := newCanonReader(data)
	r.schema(`,"attempt":`)
	s := UpgradeStatus{Schema: SchemaVersion}
	s.Attempt = uint32(r.uint(1<<32 - 1))
	r.lit(`,"phase":`)
	s.Phase = enum(&r, UpgradePhases)
	r.lit(`,"from_version":`)
	s.FromVersion = r.version()
	if r.has(`,"target_version":`) {
		t := r.version()
		s.TargetVersion = &t
	}
	r.lit(`,"running_version":`)
	s.RunningVersion = r.version()
	if r.has(`,"reason":`) {
		s.Reason = enum(&r, upgradeReasons)
	}
	if r.has(`,"detail":`) {
		s.Detail = r.str()
	}
	r.lit(`,"at":`)
	s.At = r.int64()
	if !r.end() || s.Validate() != nil {
		return UpgradeStatus{}, false
	}
	return s, true
}
