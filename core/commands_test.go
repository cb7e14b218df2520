package core

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestClampLogLines(t *testing.T) {
	for _, c := range []struct{ in, want int }{
		{-5, DefaultLogLines}, {0, DefaultLogLines}, {1, 1}, {250, 250}, {MaxLogLines, MaxLogLines}, {MaxLogLines + 1, MaxLogLines}, {1_000_000, MaxLogLines},
	} {
		if got := ClampLogLines(c.in); got != c.want {
			t.Errorf("ClampLogLines(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

// Out-of-range limits are clamped, not rejected: an operator asking for a
// million log lines gets MaxLogLines, on the wire and after decoding.
func TestCommandRequestClamping(t *testing.T) {
	cases := []struct {
		name     string
		req      CommandRequest
		check    func(CommandRequest) string
		wantJSON string
	}{
		{"log lines default", CommandRequest{Verb: VerbLogs, Logs: &LogsArgs{}},
			func(r CommandRequest) string { return fmt.Sprint(r.Logs.Lines) }, "100"},
		{"log lines capped", CommandRequest{Verb: VerbLogs, Logs: &LogsArgs{Lines: 1_000_000}},
			func(r CommandRequest) string { return fmt.Sprint(r.Logs.Lines) }, "5000"},
		{"negative log lines", CommandRequest{Verb: VerbLogs, Logs: &LogsArgs{Lines: -3}},
			func(r CommandRequest) string { return fmt.Sprint(r.Logs.Lines) }, "100"},
		{"exec defaults", CommandRequest{Verb: VerbExec, Exec: &ExecArgs{Command: []string{"ls"}}},
			func(r CommandRequest) string { return fmt.Sprint(r.Exec.TimeoutMS, " ", r.Exec.MaxOutput) }, "10000 262144"},
		{"exec timeout capped", CommandRequest{Verb: VerbExec, Exec: &ExecArgs{Command: []string{"ls"}, TimeoutMS: 3_600_000}},
			func(r CommandRequest) string { return fmt.Sprint(r.Exec.TimeoutMS) }, "300000"},
		{"exec short timeout kept", CommandRequest{Verb: VerbExec, Exec: &ExecArgs{Command: []string{"ls"}, TimeoutMS: 1}},
			func(r CommandRequest) string { return fmt.Sprint(r.Exec.TimeoutMS) }, "1"},
		{"exec output cap capped", CommandRequest{Verb: VerbExec, Exec: &ExecArgs{Command: []string{"ls"}, MaxOutput: 1 << 30}},
			func(r CommandRequest) string { return fmt.Sprint(r.Exec.MaxOutput) }, "262144"},
		{"exec negative output cap", CommandRequest{Verb: VerbExec, Exec: &ExecArgs{Command: []string{"ls"}, MaxOutput: -1}},
			func(r CommandRequest) string { return fmt.Sprint(r.Exec.MaxOutput) }, "262144"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Encoding clamps what goes on the wire ...
			b, err := c.req.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeCommandRequest(c.req.Verb, b)
			if err != nil {
				t.Fatal(err)
			}
			if s := c.check(got); s != c.wantJSON {
				t.Errorf("after encode/decode: %s, want %s (wire %s)", s, c.wantJSON, b)
			}
			// ... and decoding clamps what a foreign sender put there.
			raw := strings.Replace(string(b), `"schema":1`, `"schema":1`, 1)
			switch c.req.Verb {
			case VerbLogs:
				raw = fmt.Sprintf(`{"schema":1,"verb":"logs","logs":{"lines":%d}}`, c.req.Logs.Lines)
			case VerbExec:
				raw = fmt.Sprintf(`{"schema":1,"verb":"exec","exec":{"command":["ls"],"timeout_ms":%d,"max_output":%d}}`, c.req.Exec.TimeoutMS, c.req.Exec.MaxOutput)
			}
			got, err = DecodeCommandRequest(c.req.Verb, []byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if s := c.check(got); s != c.wantJSON {
				t.Errorf("decoding %s: %s, want %s", raw, s, c.wantJSON)
			}
		})
	}
	orig := CommandRequest{Verb: VerbLogs, Logs: &LogsArgs{Lines: 0}}
	if _, err := orig.Encode(); err != nil || orig.Logs.Lines != 0 {
		t.Errorf("Encode clamped the caller's args in place (lines=%d)", orig.Logs.Lines)
	}
}

func TestCommandErrorsIs(t *testing.T) {
	sentinels := map[ErrorCode]error{
		ErrCodeOffline: ErrOffline, ErrCodeTimeout: ErrTimeout, ErrCodeBadReply: ErrBadReply, ErrCodeRejected: ErrRejected,
		ErrCodeBadRequest: ErrBadRequest, ErrCodeDisabled: ErrDisabled, ErrCodeInternal: ErrInternal,
	}
	if len(sentinels) != len(errorCodes) {
		t.Fatalf("a code has no sentinel")
	}
	for code, sentinel := range sentinels {
		err := fmt.Errorf("ping edge-1: %w", &CommandError{Code: code, Message: "details"})
		if !errors.Is(err, sentinel) {
			t.Errorf("%s: errors.Is(wrapped, its sentinel) = false", code)
		}
		for other, s := range sentinels {
			if other != code && errors.Is(err, s) {
				t.Errorf("%s matches the %s sentinel", code, other)
			}
		}
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Code != code || ce.Message != "details" {
			t.Errorf("%s: errors.As lost the code or message: %v", code, ce)
		}
	}
	if got := (&CommandError{Code: ErrCodeTimeout}).Error(); got != "command failed: timeout" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&CommandError{Code: ErrCodeRejected, Message: "not armed"}).Error(); got != "command failed: rejected: not armed" {
		t.Errorf("Error() = %q", got)
	}
	if errors.Is(errors.New("command failed: timeout"), ErrTimeout) {
		t.Error("an untyped error matched ErrTimeout")
	}
}

// A reply carrying an error decodes; Err() hands it back typed.
func TestErrorReply(t *testing.T) {
	rep := ErrorReply(VerbExec, "req-9", ErrCodeDisabled, "exec is disabled on %s", "edge-1")
	b, err := rep.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommandReply(b)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(got.Err(), ErrDisabled) || got.ID != "req-9" || got.Verb != VerbExec || !strings.Contains(got.Err().Error(), "exec is disabled on edge-1") {
		t.Errorf("got %+v (err %v)", got, got.Err())
	}
	if (CommandReply{Verb: VerbPing}).Err() != nil {
		t.Error("a reply without error has an Err")
	}
	// An unknown verb falls back to ping so the reply still encodes; a long
	// message is cut to MaxErrorLen.
	long := ErrorReply("reboot", "", ErrCodeBadRequest, "%s", strings.Repeat("x", 5000))
	if long.Verb != VerbPing || len(long.Error.Message) != MaxErrorLen {
		t.Errorf("verb %q, message %d bytes", long.Verb, len(long.Error.Message))
	}
	if _, err := long.Encode(); err != nil {
		t.Error(err)
	}
}

// A reply that does not decode is ErrBadReply for the caller.
func TestBadReplyIsTyped(t *testing.T) {
	_, err := DecodeCommandReply([]byte(`{"schema":9,"verb":"ping"}`))
	if !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), `field "schema"`) {
		t.Errorf("got %v", err)
	}
}
