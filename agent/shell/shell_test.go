package shell

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/agent/runtime"
	"github.com/flotilla-fleet/flotilla/core"
)

// recordingCore stands in for agentcore.Agent: it records inputs and
// answers commands, so the tests see exactly what the shell delivers.
type recordingCore struct {
	mu     sync.Mutex
	inputs []agentcore.Input
}

func (c *recordingCore) Step(_ time.Time, in agentcore.Input) []agentcore.Effect {
	c.mu.Lock()
	c.inputs = append(c.inputs, in)
	c.mu.Unlock()
	if ws, ok := in.(agentcore.WorkloadStatus); ok { // the test's way to make the core write a heartbeat
		return []agentcore.Effect{agentcore.PutHeartbeat{Heartbeat: core.Heartbeat{
			AgentVersion: core.MustParseVersion("v1.0.0"), Seq: uint32(ws.Generation)}}}
	}
	if cmd, ok := in.(agentcore.CommandReceived); ok {
		if cmd.DecodeErr != "" {
			return []agentcore.Effect{agentcore.Reply{Handle: cmd.Handle,
				Reply: core.ErrorReply(cmd.Verb, "", core.ErrCodeBadRequest, "%s", cmd.DecodeErr)}}
		}
		return []agentcore.Effect{agentcore.Reply{Handle: cmd.Handle, Reply: core.CommandReply{Schema: 1, Verb: core.VerbPing,
			ID: cmd.Request.ID, Ping: &core.PingResult{Device: "dev", AgentVersion: core.MustParseVersion("v1.0.0")}}}}
	}
	return nil
}

func (c *recordingCore) desired() []agentcore.Input {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []agentcore.Input
	for _, in := range c.inputs {
		switch in.(type) {
		case agentcore.DesiredPut, agentcore.DesiredDeleted, agentcore.DesiredInvalid:
			out = append(out, in)
		}
	}
	return out
}

func startServer(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func spec(dep, version string) []byte {
	b, _ := core.WorkloadSpec{Deployment: dep, Name: "w", Version: version, Args: []string{"/bin/true"}}.Encode()
	return b
}

func TestShellAgainstNATS(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, filepath.Join(dir, "js"), -1)
	port := srv.Addr().(*net.TCPAddr).Port
	defer func() { srv.Shutdown() }()

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lay := executor.Layout{Dir: filepath.Join(dir, "data")}
	rc := &recordingCore{}
	sh := New(Options{Device: "dev", Version: core.MustParseVersion("v1.0.0"), Core: rc,
		NATS:    NATSOptions{URL: srv.ClientURL(), MaxDelay: 200 * time.Millisecond},
		Journal: journal.New(lay.Journal()), Executor: &executor.Executor{Layout: lay},
		Workload: runtime.NewManager(core.RuntimeProcess, func(runtime.Status) {}, log), Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sh.Run(ctx) }()
	defer func() { cancel(); <-done }()

	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	// The agent creates the buckets it needs when they are missing.
	var kv jetstream.KeyValue
	eventually(t, "the desired-state bucket", func() bool {
		kv, err = js.KeyValue(context.Background(), core.BucketDesiredState)
		return err == nil
	})
	put := func(key string, val []byte) {
		t.Helper()
		if _, err := kv.Put(context.Background(), key, val); err != nil {
			t.Fatal(err)
		}
	}
	put("dev.web", spec("web", "1"))
	put("other.web", spec("web", "1")) // another device's key: never delivered
	put("dev.db", []byte(`{"schema":1,"deployment":"db"}`))
	eventually(t, "two desired-state inputs", func() bool { return len(rc.desired()) == 2 })
	got := rc.desired()
	if p, ok := got[0].(agentcore.DesiredPut); !ok || p.Deployment != "web" || p.Spec.Version != "1" {
		t.Fatalf("first input %#v", got[0])
	}
	if inv, ok := got[1].(agentcore.DesiredInvalid); !ok || inv.Deployment != "db" || inv.Err == "" {
		t.Fatalf("second input %#v", got[1])
	}

	t.Run("commands get replies, typed errors for bad requests", func(t *testing.T) {
		body, _ := core.CommandRequest{Verb: core.VerbPing, ID: "x1"}.Encode()
		m, err := nc.Request(core.CommandSubject("dev", core.VerbPing), body, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r, err := core.DecodeCommandReply(m.Data)
		if err != nil || r.Ping == nil || r.ID != "x1" {
			t.Fatalf("ping reply %+v %v", r, err)
		}
		m, err = nc.Request(core.CommandSubject("dev", core.VerbPing), []byte("not json"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r, _ = core.DecodeCommandReply(m.Data)
		if r.Error == nil || r.Error.Code != core.ErrCodeBadRequest {
			t.Fatalf("bad body reply %+v", r)
		}
		m, err = nc.Request("device-commands.dev.reboot", []byte("{}"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r, _ = core.DecodeCommandReply(m.Data)
		if r.Error == nil || r.Error.Code != core.ErrCodeBadRequest {
			t.Fatalf("unknown verb reply %+v", r)
		}
	})

	t.Run("offline writes: last value wins; watch resumes after a server restart", func(t *testing.T) {
		hbKV, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: core.BucketDeviceHeartbeat, History: 10})
		if err != nil {
			t.Fatal(err)
		}
		_ = hbKV
		srv.Shutdown()
		srv.WaitForShutdown()
		for seq := 1; seq <= 5; seq++ {
			sh.Push(agentcore.WorkloadStatus{Deployment: "hb", Generation: int64(seq)})
		}
		time.Sleep(300 * time.Millisecond)
		srv = startServer(t, filepath.Join(dir, "js"), port)
		kv2, _ := js.KeyValue(context.Background(), core.BucketDesiredState)
		eventually(t, "desired-state put after restart", func() bool {
			_, err := kv2.Put(context.Background(), "dev.web", spec("web", "2"))
			return err == nil
		})
		eventually(t, "the update after the restart", func() bool { return len(rc.desired()) >= 3 })
		time.Sleep(500 * time.Millisecond)
		got := rc.desired()
		if len(got) != 3 {
			t.Fatalf("want exactly one new input after the restart (no replays), got %d: %#v", len(got), got)
		}
		if p, ok := got[2].(agentcore.DesiredPut); !ok || p.Spec.Version != "2" || p.Revision <= got[0].(agentcore.DesiredPut).Revision {
			t.Fatalf("after restart: %#v", got[2])
		}
		hb, _ := js.KeyValue(context.Background(), core.BucketDeviceHeartbeat)
		var hist []jetstream.KeyValueEntry
		eventually(t, "the buffered heartbeat", func() bool {
			hist, _ = hb.History(context.Background(), "dev")
			return len(hist) > 0
		})
		eventually(t, "the newest heartbeat (seq 5) last", func() bool {
			hist, _ = hb.History(context.Background(), "dev")
			h, _ := core.DecodeHeartbeat(hist[len(hist)-1].Value())
			return h.Seq == 5
		})
		// Values buffered offline collapse into the newest. The one write
		// that may already have been handed to nats.go when the server went
		// away (its status was still CONNECTED) can land after the
		// reconnect: a write that timed out and landed. It must never land
		// after a newer value.
		var seqs []uint32
		for _, e := range hist {
			h, _ := core.DecodeHeartbeat(e.Value())
			seqs = append(seqs, h.Seq)
		}
		if len(seqs) > 2 || !slices.IsSorted(seqs) {
			t.Fatalf("want the newest buffered heartbeat (seq 5) written, at most one earlier in-flight write before it, got seqs %v", seqs)
		}
	})
}

func TestReconnectDelayBacksOffWithJitter(t *testing.T) {
	r := newRand()
	for n, maxWant := range map[int]time.Duration{1: 250 * time.Millisecond, 3: time.Second, 10: 10 * time.Second, 50: 10 * time.Second} {
		seen := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			d := ReconnectDelay(n, 10*time.Second, r)
			if d < maxWant/2 || d > maxWant {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", n, d, maxWant/2, maxWant)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("attempt %d: delays are not jittered: %v", n, seen)
		}
	}
}
