// Package config loads the agent's configuration: defaults, then a YAML or
// JSON file, then FLOTILLA_* environment variables, then command-line flags,
// each overriding the one before. Validate names the first bad field.
package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flotilla-fleet/flotilla/core"
)

// Executor names how the agent replaces itself.
type Executor string

const (
	ExecutorSystemd Executor = "systemd" // candidate as a systemd-run transient unit
	ExecutorProcess Executor = "process" // candidate as a sibling process
)

// Config is the agent's configuration. Field names are the file's keys.
type Config struct {
	Device string            `yaml:"device" json:"device"`
	Labels map[string]string `yaml:"labels" json:"labels"`

	NATSURL   string `yaml:"nats_url" json:"nats_url"`
	NATSCreds string `yaml:"nats_creds" json:"nats_creds"` // .creds file (JWT + nkey)
	NATSCA    string `yaml:"nats_ca" json:"nats_ca"`       // PEM CA bundle for TLS
	NATSCert  string `yaml:"nats_cert" json:"nats_cert"`   // client certificate (mutual TLS)
	NATSKey   string `yaml:"nats_key" json:"nats_key"`
	// NATSVport is a virtio-serial port (e.g. /dev/virtio-ports/flotilla.nats)
	// to reach NATS over instead of TCP, for VM guests without a network.
	NATSVport string `yaml:"nats_vport" json:"nats_vport"`

	DataDir           string        `yaml:"data_dir" json:"data_dir"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" json:"heartbeat_interval"`
	ExecAllowed       bool          `yaml:"exec_allowed" json:"exec_allowed"`
	Executor          Executor      `yaml:"executor" json:"executor"`
	Runtime           core.Runtime  `yaml:"runtime" json:"runtime"`
	// PublicKey is a base64 ed25519 public key; when set, every artifact
	// must carry a valid signature by it.
	PublicKey string `yaml:"public_key" json:"public_key"`
	// KeepVersions is how many rollback targets stay on disk besides current.
	KeepVersions int `yaml:"keep_versions" json:"keep_versions"`
	// WorkloadGrace is how long a stopping workload gets between SIGTERM and
	// SIGKILL.
	WorkloadGrace time.Duration `yaml:"workload_grace" json:"workload_grace"`
	LogLevel      string        `yaml:"log_level" json:"log_level"`
}

// Default returns the configuration before any file, variable or flag.
func Default() Config {
	return Config{
		NATSURL:           "nats://127.0.0.1:4222",
		DataDir:           "/var/lib/flotilla",
		HeartbeatInterval: 10 * time.Second,
		Executor:          ExecutorSystemd,
		Runtime:           core.RuntimeProcess,
		KeepVersions:      2,
		WorkloadGrace:     10 * time.Second,
		LogLevel:          "info",
	}
}

// LoadFile merges a YAML or JSON file (JSON is YAML) into c. Unknown keys
// are errors, so a typo does not silently fall back to a default.
func (c *Config) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	var f fileConfig
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return f.mergeInto(c, path)
}

// fileConfig mirrors Config with durations as strings ("10s") and pointers,
// so that only keys present in the file override.
type fileConfig struct {
	Device            *string           `yaml:"device"`
	Labels            map[string]string `yaml:"labels"`
	NATSURL           *string           `yaml:"nats_url"`
	NATSCreds         *string           `yaml:"nats_creds"`
	NATSCA            *string           `yaml:"nats_ca"`
	NATSCert          *string           `yaml:"nats_cert"`
	NATSKey           *string           `yaml:"nats_key"`
	NATSVport         *string           `yaml:"nats_vport"`
	DataDir           *string           `yaml:"data_dir"`
	HeartbeatInterval *string           `yaml:"heartbeat_interval"`
	ExecAllowed       *bool             `yaml:"exec_allowed"`
	Executor          *string           `yaml:"executor"`
	Runtime           *string           `yaml:"runtime"`
	PublicKey         *string           `yaml:"public_key"`
	KeepVersions      *int              `yaml:"keep_versions"`
	WorkloadGrace     *string           `yaml:"workload_grace"`
	LogLevel          *string           `yaml:"log_level"`
}

func (f fileConfig) mergeInto(c *Config, src string) error {
	str := map[*string]*string{f.Device: &c.Device, f.NATSURL: &c.NATSURL, f.NATSCreds: &c.NATSCreds,
		f.NATSCA: &c.NATSCA, f.NATSCert: &c.NATSCert, f.NATSKey: &c.NATSKey, f.NATSVport: &c.NATSVport,
		f.DataDir: &c.DataDir, f.PublicKey: &c.PublicKey, f.LogLevel: &c.LogLevel}
	for from, to := range str {
		if from != nil {
			*to = *from
		}
	}
	if f.Labels != nil {
		c.Labels = f.Labels
	}
	if f.ExecAllowed != nil {
		c.ExecAllowed = *f.ExecAllowed
	}
	if f.Executor != nil {
		c.Executor = Executor(*f.Executor)
	}
	if f.Runtime != nil {
		c.Runtime = core.Runtime(*f.Runtime)
	}
	if f.KeepVersions != nil {
		c.KeepVersions = *f.KeepVersions
	}
	for _, d := range []struct {
		key  string
		from *string
		to   *time.Duration
	}{{"heartbeat_interval", f.HeartbeatInterval, &c.HeartbeatInterval}, {"workload_grace", f.WorkloadGrace, &c.WorkloadGrace}} {
		if d.from == nil {
			continue
		}
		v, err := time.ParseDuration(*d.from)
		if err != nil {
			return fmt.Errorf("%s: %s: want a duration like 10s, got %q", src, d.key, *d.from)
		}
		*d.to = v
	}
	return nil
}

// EnvPrefix prefixes every environment variable the agent reads.
const EnvPrefix = "FLOTILLA_"

// envKeys maps variables (after the prefix) to file keys.
var envKeys = []string{"device", "labels", "nats_url", "nats_creds", "nats_ca", "nats_cert", "nats_key",
	"nats_vport", "data_dir", "heartbeat_interval", "exec_allowed", "executor", "runtime", "public_key",
	"keep_versions", "workload_grace", "log_level"}

// LoadEnv merges FLOTILLA_<KEY> variables (FLOTILLA_NATS_URL, FLOTILLA_LABELS=
// "zone=a,tier=edge", ...) into c. getenv is os.Getenv in production.
func (c *Config) LoadEnv(getenv func(string) string) error {
	for _, k := range envKeys {
		v := getenv(EnvPrefix + strings.ToUpper(k))
		if v == "" {
			continue
		}
		if err := c.set(k, v); err != nil {
			return fmt.Errorf("environment %s%s: %w", EnvPrefix, strings.ToUpper(k), err)
		}
	}
	return nil
}

// set assigns one key from its string form (environment and flags).
func (c *Config) set(key, v string) error {
	switch key {
	case "device":
		c.Device = v
	case "labels":
		m, err := ParseLabels(v)
		if err != nil {
			return err
		}
		c.Labels = m
	case "nats_url":
		c.NATSURL = v
	case "nats_creds":
		c.NATSCreds = v
	case "nats_ca":
		c.NATSCA = v
	case "nats_cert":
		c.NATSCert = v
	case "nats_key":
		c.NATSKey = v
	case "nats_vport":
		c.NATSVport = v
	case "data_dir":
		c.DataDir = v
	case "public_key":
		c.PublicKey = v
	case "log_level":
		c.LogLevel = v
	case "executor":
		c.Executor = Executor(v)
	case "runtime":
		c.Runtime = core.Runtime(v)
	case "exec_allowed":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		c.ExecAllowed = b
	case "keep_versions":
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		c.KeepVersions = n
	case "heartbeat_interval", "workload_grace":
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration like 10s, got %q", v)
		}
		if key == "heartbeat_interval" {
			c.HeartbeatInterval = d
		} else {
			c.WorkloadGrace = d
		}
	default:
		return fmt.Errorf("unknown key %q", key)
	}
	return nil
}

// RegisterFlags adds one flag per key (--nats-url, --data-dir, ...) to fs.
// Flags apply, after file and environment, when the returned func is called
// after fs.Parse.
func (c *Config) RegisterFlags(fs *flag.FlagSet) func() error {
	vals := map[string]*string{}
	for _, k := range envKeys {
		name := strings.ReplaceAll(k, "_", "-")
		vals[k] = fs.String(name, "", "overrides config key "+k+" (env "+EnvPrefix+strings.ToUpper(k)+")")
	}
	return func() error {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, k := range envKeys {
			if !set[strings.ReplaceAll(k, "_", "-")] {
				continue
			}
			if err := c.set(k, *vals[k]); err != nil {
				return fmt.Errorf("flag --%s: %w", strings.ReplaceAll(k, "_", "-"), err)
			}
		}
		return nil
	}
}

// ParseLabels parses "k=v,k2=v2".
func ParseLabels(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		m[k] = v
	}
	return m, nil
}

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	if err := core.ValidateDeviceName(c.Device); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := core.ValidateLabels(c.Labels); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	if c.NATSURL == "" && c.NATSVport == "" {
		return errors.New("nats_url: required (or nats_vport)")
	}
	if !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("data_dir: must be an absolute path, got %q", c.DataDir)
	}
	if c.HeartbeatInterval < 100*time.Millisecond || c.HeartbeatInterval > time.Hour {
		return fmt.Errorf("heartbeat_interval: must be between 100ms and 1h, got %s", c.HeartbeatInterval)
	}
	if c.Executor != ExecutorSystemd && c.Executor != ExecutorProcess {
		return fmt.Errorf("executor: want systemd or process, got %q", c.Executor)
	}
	if c.Runtime != core.RuntimeProcess && c.Runtime != core.RuntimePodman {
		return fmt.Errorf("runtime: want process or podman, got %q", c.Runtime)
	}
	if c.PublicKey != "" {
		if _, err := c.PublicKeyBytes(); err != nil {
			return err
		}
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		return errors.New("nats_cert and nats_key: set both or neither")
	}
	if c.KeepVersions < 1 || c.KeepVersions > 20 {
		return fmt.Errorf("keep_versions: must be between 1 and 20, got %d", c.KeepVersions)
	}
	if c.WorkloadGrace < 0 || c.WorkloadGrace > 10*time.Minute {
		return fmt.Errorf("workload_grace: must be between 0 and 10m, got %s", c.WorkloadGrace)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: want debug, info, warn or error, got %q", c.LogLevel)
	}
	return nil
}

// PublicKeyBytes decodes PublicKey; nil when none is configured.
func (c Config) PublicKeyBytes() (ed25519.PublicKey, error) {
	if c.PublicKey == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(c.PublicKey)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public_key: want a base64 ed25519 public key (%d bytes)", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// String renders the configuration for logs (no secrets are held in it: the
// creds and key are paths).
func (c Config) String() string {
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var l []string
	for _, k := range keys {
		l = append(l, k+"="+c.Labels[k])
	}
	return fmt.Sprintf("device=%s labels=%s nats=%s vport=%s data=%s executor=%s runtime=%s exec=%v",
		c.Device, strings.Join(l, ","), c.NATSURL, c.NATSVport, c.DataDir, c.Executor, c.Runtime, c.ExecAllowed)
}
