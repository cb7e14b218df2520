package natsadapter_test

import (
	"context"
	"errors"
	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	s := natstest.Start(t)
	nc, err := natsadapter.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestCommandErrorsAreTyped(t *testing.T) {
	nc := startNATS(t)
	ctx := context.Background()
	ping := core.CommandRequest{Verb: core.VerbPing, ID: "p1"}

	if _, err := natsadapter.Command(ctx, nc, "nobody", ping, time.Second); !errors.Is(err, core.ErrOffline) {
		t.Fatalf("no responders: got %v, want offline", err)
	}
	sub, _ := nc.Subscribe(core.CommandSubject("slow", core.VerbPing), func(*nats.Msg) {})
	defer sub.Unsubscribe()
	if _, err := natsadapter.Command(ctx, nc, "slow", ping, 200*time.Millisecond); !errors.Is(err, core.ErrTimeout) {
		t.Fatalf("silent agent: got %v, want timeout", err)
	}
	sub2, _ := nc.Subscribe(core.CommandSubject("garbled", core.VerbPing), func(m *nats.Msg) { _ = m.Respond([]byte("{")) })
	defer sub2.Unsubscribe()
	if _, err := natsadapter.Command(ctx, nc, "garbled", ping, time.Second); !errors.Is(err, core.ErrBadReply) {
		t.Fatalf("garbled reply: got %v, want bad-reply", err)
	}
	sub3, _ := nc.Subscribe(core.CommandSubject("busy", core.VerbUpgradeStop), func(m *nats.Msg) {
		b, _ := core.ErrorReply(core.VerbUpgradeStop, "s1", core.ErrCodeRejected, "not armed").Encode()
		_ = m.Respond(b)
	})
	defer sub3.Unsubscribe()
	stop := core.CommandRequest{Verb: core.VerbUpgradeStop, ID: "s1",
		UpgradeStop: &core.UpgradeStopArgs{Attempt: 1, TargetVersion: core.MustParseVersion("v1.1.0")}}
	_, err := natsadapter.Command(ctx, nc, "busy", stop, time.Second)
	if !errors.Is(err, core.ErrRejected) {
		t.Fatalf("agent error: got %v, want rejected", err)
	}
	if code, _ := natsadapter.ErrorCode(err); code != core.ErrCodeRejected {
		t.Fatalf("ErrorCode %q", code)
	}
	sub4, _ := nc.Subscribe(core.CommandSubject("ok", core.VerbPing), func(m *nats.Msg) {
		b, _ := core.CommandReply{Verb: core.VerbPing, ID: "p1", Ping: &core.PingResult{Device: "ok",
			AgentVersion: core.MustParseVersion("v1.0.0")}}.Encode()
		_ = m.Respond(b)
	})
	defer sub4.Unsubscribe()
	rep, err := natsadapter.Command(ctx, nc, "ok", ping, time.Second)
	if err != nil || rep.Ping == nil || rep.Ping.Device != "ok" {
		t.Fatalf("ping: %+v %v", rep, err)
	}
	if _, err := natsadapter.Command(ctx, nc, "ok", core.CommandRequest{Verb: core.VerbPing, ID: "other"}, time.Second); !errors.Is(err, core.ErrBadReply) {
		t.Fatalf("reply for another request: got %v, want bad-reply", err)
	}
}

func TestWatchReplaysFromRevisionZeroThenFollows(t *testing.T) {
	nc := startNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ad, err := natsadapter.New(ctx, nc, natsadapter.Options{CreateBuckets: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ad.Put(ctx, core.BucketDesiredState, "d1.web", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := ad.Put(ctx, core.BucketDesiredState, "d1.web", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if err := ad.Put(ctx, core.BucketDesiredState, "d2.web", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := ad.Delete(ctx, core.BucketDesiredState, "d2.web"); err != nil {
		t.Fatal(err)
	}
	got := make(chan opcore.Input, 16)
	go func() { _ = ad.Watch(ctx, []string{core.BucketDesiredState}, func(in opcore.Input) { got <- in }) }()
	next := func() opcore.Input {
		select {
		case in := <-got:
			return in
		case <-time.After(5 * time.Second):
			t.Fatal("no watch event")
			return nil
		}
	}
	var replay []opcore.Input
	for {
		in := next()
		if _, ok := in.(opcore.KVReplayed); ok {
			break
		}
		replay = append(replay, in)
	}
	if len(replay) != 2 {
		t.Fatalf("replay %#v, want the latest put of d1.web and the delete of d2.web", replay)
	}
	if p, ok := replay[0].(opcore.KVPut); !ok || p.Key != "d1.web" || string(p.Value) != "two" {
		t.Fatalf("first replayed entry %#v", replay[0])
	}
	if d, ok := replay[1].(opcore.KVDelete); !ok || d.Key != "d2.web" {
		t.Fatalf("second replayed entry %#v", replay[1])
	}
	if err := ad.Put(ctx, core.BucketDesiredState, "d3.web", []byte("live")); err != nil {
		t.Fatal(err)
	}
	if p, ok := next().(opcore.KVPut); !ok || p.Key != "d3.web" {
		t.Fatalf("live event %#v", p)
	}
}
