package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseRunFlags(t *testing.T) {
	f, err := parseRunFlags([]string{"--nats-url", "nats://n:4222", "--namespace", "fleet", "--leader-elect",
		"--offline-after", "45s", "--metrics-bind-address", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if f.natsURL != "nats://n:4222" || f.namespace != "fleet" || !f.leaderElect || f.offlineAfter != 45*time.Second ||
		f.metricsAddr != "0" || f.healthAddr != ":8081" || !f.createDevices {
		t.Fatalf("flags %+v", f)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--namespace", ""}, "--namespace must not be empty"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--offline-after", "soon"}, "invalid value"},
	} {
		if _, err := parseRunFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}
