package natsim

import (
	"testing"
	"time"
)

func TestSubjectMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, subject string
		want            bool
	}{
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{">", "a", true},
		{"*.b", "a.b", true},
		{"device-commands.d1.>", "device-commands.d1.ping", true},
		{"device-commands.d1.>", "device-commands.d10.ping", false},
	} {
		if got := SubjectMatch(tc.filter, tc.subject); got != tc.want {
			t.Errorf("SubjectMatch(%q, %q) = %v", tc.filter, tc.subject, got)
		}
	}
}

type countSink struct{ n int }

func (c *countSink) Deliver(*Sub, *Msg) { c.n++ }

func TestPublishReachesEveryMatchingSubscriptionWhateverItsIndex(t *testing.T) {
	s := NewServer()
	subs := []string{"device-commands.d1.>", "device-commands.*.ping", "device-commands", ">", "device-commands.d1.ping", "x.y"}
	sinks := make([]*countSink, len(subs))
	for i, f := range subs {
		sinks[i] = &countSink{}
		s.Subscribe(f, sinks[i])
	}
	if n := s.Publish(&Msg{Subject: "device-commands.d1.ping"}); n != 4 {
		t.Fatalf("delivered to %d subscriptions, want 4", n)
	}
	want := []int{1, 1, 0, 1, 1, 0}
	for i := range want {
		if sinks[i].n != want[i] {
			t.Errorf("%s got %d messages, want %d", subs[i], sinks[i].n, want[i])
		}
	}
	if n := s.Publish(&Msg{Subject: "device-commands"}); n != 2 {
		t.Fatalf("single-token subject reached %d subscriptions, want 2", n)
	}
}

type entrySink struct{ got []*Entry }

func (s *entrySink) WatchEntry(_ *Watcher, e *Entry) { s.got = append(s.got, e) }

func TestCompareAndSetAndWatchFilters(t *testing.T) {
	s := NewServer()
	b, _ := s.CreateBucket("kv", 3)
	zero := uint64(0)
	if err := b.Store(0, &Entry{Key: "a", Op: OpPut}, &zero); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(0, &Entry{Key: "a", Op: OpPut}, &zero); err == nil {
		t.Fatal("create of an existing key succeeded")
	}
	one := uint64(1)
	if err := b.Store(time.Second, &Entry{Key: "a", Op: OpPut}, &one); err != nil {
		t.Fatal(err)
	}
	sink := &entrySink{}
	w, initial := b.Watch("d1.*", WatchLast, 0, sink)
	if len(initial) != 0 {
		t.Fatalf("initial %v", initial)
	}
	b.Put(0, "d1.web", nil, nil)
	b.Put(0, "d10.web", nil, nil)
	b.Put(0, "d1", nil, nil)
	w.Stop()
	b.Put(0, "d1.db", nil, nil)
	if len(sink.got) != 1 || sink.got[0].Key != "d1.web" {
		t.Fatalf("watch d1.* saw %v", sink.got)
	}
	if b.Store(0, &Entry{Key: "bad key", Op: OpPut}, nil) == nil {
		t.Fatal("accepted a key with a space")
	}
}
