package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrecedenceFileEnvFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	os.WriteFile(path, []byte("device: dev-1\nlabels: {zone: a}\nnats_url: nats://file:4222\nheartbeat_interval: 2s\ndata_dir: "+dir+"\nexecutor: process\n"), 0o600)
	c := Default()
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLOTILLA_NATS_URL": "nats://env:4222", "FLOTILLA_EXEC_ALLOWED": "true"}
	if err := c.LoadEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	apply := c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--nats-url", "nats://flag:4222", "--labels", "zone=b,tier=edge"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.NATSURL != "nats://flag:4222" || !c.ExecAllowed || c.HeartbeatInterval != 2*time.Second ||
		c.Labels["zone"] != "b" || c.Labels["tier"] != "edge" || c.Executor != ExecutorProcess {
		t.Fatalf("merged config wrong: %+v", c)
	}
}

func TestJSONFileAccepted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.json")
	os.WriteFile(path, []byte(`{"device":"dev-2","nats_vport":"/dev/vport0p1","data_dir":"/data"}`), 0o600)
	c := Default()
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.NATSVport != "/dev/vport0p1" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestBadConfigNamesTheField(t *testing.T) {
	base := func() Config { c := Default(); c.Device = "d"; return c }
	cases := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"no device", func(c *Config) { c.Device = "" }, "device"},
		{"dotted device", func(c *Config) { c.Device = "a.b" }, "device"},
		{"relative data dir", func(c *Config) { c.DataDir = "data" }, "data_dir"},
		{"tiny heartbeat", func(c *Config) { c.HeartbeatInterval = time.Millisecond }, "heartbeat_interval"},
		{"unknown executor", func(c *Config) { c.Executor = "docker" }, "executor"},
		{"unknown runtime", func(c *Config) { c.Runtime = "lxc" }, "runtime"},
		{"bad key", func(c *Config) { c.PublicKey = "xyz" }, "public_key"},
		{"cert without key", func(c *Config) { c.NATSCert = "/c" }, "nats_cert"},
		{"bad level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
	}
	for _, tc := range cases {
		c := base()
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want mention of %s", tc.name, err, tc.want)
		}
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("devise: typo\n"), 0o600)
	c := base()
	if err := c.LoadFile(path); err == nil || !strings.Contains(err.Error(), "devise") {
		t.Errorf("unknown key accepted: %v", err)
	}
}
