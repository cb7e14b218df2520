package executor

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// bytesSource serves fixed bytes for any reference.
type bytesSource []byte

func (b bytesSource) Open(context.Context, core.ArtifactRef) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(b)), nil
}

func refFor(data []byte) core.ArtifactRef {
	sum := sha256.Sum256(data)
	return core.ArtifactRef{Object: "flotilla-agent/v2.0.0", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

func TestFetchVerifiesWhatItDownloads(t *testing.T) {
	good := []byte("#!/bin/sh\necho agent\n")
	pub, priv, _ := ed25519.GenerateKey(nil)
	signed := refFor(good)
	signed.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, good))
	badSig := refFor(good)
	badSig.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte("other")))
	cases := []struct {
		name   string
		served []byte
		ref    core.ArtifactRef
		pub    ed25519.PublicKey
		reason core.UpgradeReason // "" means success
	}{
		{"good", good, refFor(good), nil, ""},
		{"signed with key", good, signed, pub, ""},
		{"checksum mismatch", append([]byte("X"), good[1:]...), refFor(good), nil, core.ReasonChecksumMismatch},
		{"oversize", append(append([]byte(nil), good...), "more"...), refFor(good), nil, core.ReasonDownloadFailed},
		{"short", good[:5], refFor(good), nil, core.ReasonDownloadFailed},
		{"bad signature", good, badSig, pub, core.ReasonSignatureInvalid},
		{"unsigned with key", good, refFor(good), pub, core.ReasonSignatureInvalid},
		{"object path traversal", good, func() core.ArtifactRef { r := refFor(good); r.Object = "../etc/passwd"; return r }(), nil, core.ReasonDownloadFailed},
		{"declared beyond the limit", good, func() core.ArtifactRef { r := refFor(good); r.Size = core.MaxArtifactBytes + 1; return r }(), nil, core.ReasonDownloadFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "versions", "v2.0.0", BinaryName)
			err := Fetch(context.Background(), bytesSource(c.served), c.ref, dst, c.pub)
			if c.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				got, _ := os.ReadFile(dst)
				sidecar, _ := os.ReadFile(dst + ".sha256")
				if !bytes.Equal(got, good) || strings.TrimSpace(string(sidecar)) != c.ref.SHA256 {
					t.Fatalf("file or sidecar wrong")
				}
				return
			}
			var fe *FetchError
			if !errors.As(err, &fe) || fe.Reason != c.reason {
				t.Fatalf("err = %v, want reason %s", err, c.reason)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a rejected artifact was left at %s", dst)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), "*.partial")); len(left) > 0 {
				t.Fatalf("partial file left: %v", left)
			}
		})
	}
}

func TestVersionDirRejectsTraversal(t *testing.T) {
	for _, s := range []string{"..", ".", "", "a/b", "a\\b", "x\x00"} {
		if err := safeComponent(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	l := Layout{Dir: "/data"}
	d, err := l.VersionDir(core.MustParseVersion("v1.2.3-rc.1+build.5"))
	if err != nil || d != "/data/versions/v1.2.3-rc.1+build.5" {
		t.Fatalf("%q %v", d, err)
	}
}

func writeBinary(t *testing.T, l Layout, v string, body string) {
	t.Helper()
	bin, _ := l.Binary(core.MustParseVersion(v))
	os.MkdirAll(filepath.Dir(bin), 0o755)
	if err := os.WriteFile(bin, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestSwapCurrentIsAtomicAndChecksTheTarget(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	if err := l.Init(); err != nil {
		t.Fatal(err)
	}
	writeBinary(t, l, "v1.0.0", "#!/bin/sh\n")
	writeBinary(t, l, "v2.0.0", "#!/bin/sh\n")
	for _, v := range []string{"v1.0.0", "v2.0.0", "v1.0.0"} {
		if err := l.SwapCurrent(core.MustParseVersion(v), nil); err != nil {
			t.Fatal(err)
		}
		cur, err := l.CurrentVersion()
		if err != nil || cur.String() != v {
			t.Fatalf("current = %v %v, want %s", cur, err, v)
		}
	}
	if err := l.SwapCurrent(core.MustParseVersion("v9.0.0"), nil); err == nil {
		t.Fatal("swap to a version that is not installed succeeded")
	}
	if cur, _ := l.CurrentVersion(); cur.String() != "v1.0.0" {
		t.Fatalf("failed swap moved current to %v", cur)
	}
	if err := l.Remove(core.MustParseVersion("v1.0.0")); err == nil {
		t.Fatal("removed the version current points at")
	}
	if err := l.Remove(core.MustParseVersion("v2.0.0")); err != nil {
		t.Fatal(err)
	}
	inst, _ := l.Installed()
	if len(inst) != 1 || inst[0].String() != "v1.0.0" {
		t.Fatalf("installed = %v", inst)
	}
}

func TestPreserveRunningMakesAFreshInstallRollbackable(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	l.Init()
	self := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(self, []byte("binary-v1"), 0o755)
	e := &Executor{Layout: l}
	if err := e.Preserve(core.MustParseVersion("v1.0.0"), self); err != nil {
		t.Fatal(err)
	}
	cur, _ := l.CurrentVersion()
	bin, _ := l.Binary(cur)
	got, _ := os.ReadFile(bin)
	if cur.String() != "v1.0.0" || string(got) != "binary-v1" {
		t.Fatalf("current=%v content=%q", cur, got)
	}
}

func TestProcessLauncherStopsAndReportsExits(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "cand.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nexec sleep \"$1\"\n"), 0o755)
	p := &ProcessLauncher{RunDir: filepath.Join(dir, "run"), Grace: time.Second}
	exited := make(chan string, 1)
	if err := p.Start(context.Background(), 7, script, []string{"0.2", "--candidate-attempt=7"}, func(d string) { exited <- d }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("candidate exit not reported")
	}
	// A stopped candidate is not reported as exited.
	stopped := make(chan string, 1)
	if err := p.Start(context.Background(), 8, script, []string{"30", "--candidate-attempt=8"}, func(d string) { stopped <- d }); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-stopped:
		t.Fatalf("stop reported as exit: %s", d)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := os.Stat(p.pidFile(8)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("pid file left after stop")
	}
}

func TestStripCandidateFlag(t *testing.T) {
	got := StripCandidateFlag([]string{"--config", "/c", "--candidate-attempt=3", "--candidate-attempt", "4", "-x"})
	if strings.Join(got, " ") != "--config /c -x" {
		t.Fatalf("got %v", got)
	}
}

// flakySource fails to open the first n times.
type flakySource struct {
	fails int
	data  []byte
}

func (f *flakySource) Open(ctx context.Context, ref core.ArtifactRef) (io.ReadCloser, error) {
	if f.fails > 0 {
		f.fails--
		return nil, errors.New("nats: connection closed")
	}
	return bytesSource(f.data).Open(ctx, ref)
}

func TestDownloadRetriesTransientFailuresOnly(t *testing.T) {
	data := []byte("binary")
	l := Layout{Dir: t.TempDir()}
	e := &Executor{Layout: l, Source: &flakySource{fails: 1, data: data}}
	if err := e.Download(context.Background(), core.MustParseVersion("v2.0.0"), refFor(data)); err != nil {
		t.Fatalf("one dropped connection failed the download: %v", err)
	}
	bad := refFor([]byte("other"))
	bad.Size = int64(len(data))
	e.Source = &flakySource{data: data}
	began := time.Now()
	err := e.Download(context.Background(), core.MustParseVersion("v3.0.0"), bad)
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Reason != core.ReasonChecksumMismatch || time.Since(began) > 500*time.Millisecond {
		t.Fatalf("checksum mismatch: %v after %s (must fail at once)", err, time.Since(began))
	}
}
