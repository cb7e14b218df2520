package core

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeFastPathAgreesWithSlowPath: the single-pass decoder accepts an
// input only if the general decoder accepts it too, with the same value.
func FuzzDecodeFastPathAgreesWithSlowPath(f *testing.F) {
	for _, s := range []string{
		`{"schema":1,"device":"d1","deployment":"web","generation":3,"version":"1.25","phase":"Running","last_event_at":5}`,
		`{"SCHEMA":2,"schema":1,"device":"d1","deployment":"web","generation":3,"phase":"Running","last_event_at":5}`,
		`{"schema":1,"Schema":1,"device":"d1","deployment":"web","generation":3,"phase":"Pending","last_event_at":5}`,
		`{"schema":1,"device":"d1","deployment":"web","generation":3,"phase":"Failed","last_event_at":5,"last_error":"x"}`,
		`{"v":1,"av":"v1.2.3","q":1,"u":2,"a":3}`,
		`{"V":1,"av":"v1.2.3","q":1,"u":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fs, ss DeviceState
		if decodeFast("schema", data, &fs) {
			if err := decodeSlow("device state", "schema", data, &ss); err != nil {
				t.Fatalf("fast path accepted %q, slow path rejected it: %v", data, err)
			}
			a, _ := json.Marshal(fs)
			b, _ := json.Marshal(ss)
			if string(a) != string(b) {
				t.Fatalf("fast %s != slow %s", a, b)
			}
		}
		var fh, sh Heartbeat
		if decodeFast("v", data, &fh) {
			if err := decodeSlow("heartbeat", "v", data, &sh); err != nil {
				t.Fatalf("fast path accepted %q, slow path rejected it: %v", data, err)
			}
			a, _ := json.Marshal(fh)
			b, _ := json.Marshal(sh)
			if string(a) != string(b) {
				t.Fatalf("fast %+v != slow %+v", fh, sh)
			}
		}
	})
}
