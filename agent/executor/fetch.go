package executor

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/core"
)

// Source opens an artifact's bytes.
type Source interface {
	Open(ctx context.Context, ref core.ArtifactRef) (io.ReadCloser, error)
}

// FetchError is a failed download with the core's reason code.
type FetchError struct {
	Reason core.UpgradeReason
	Err    error
	// Transient marks failures of the transport (the source could not be
	// opened or the stream broke), worth retrying; a wrong checksum,
	// size or signature is final.
	Transient bool
}

func (e *FetchError) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }
func (e *FetchError) Unwrap() error { return e.Err }

func fetchErr(reason core.UpgradeReason, format string, args ...any) error {
	return &FetchError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Fetch downloads ref into path (mode 0755), verifying its size, SHA-256 and,
// when pub is set, its ed25519 signature. Bytes go to path.partial first and
// are renamed into place only once verified, with fsyncs of the file and its
// directory; a sidecar path.sha256 records the digest for --self-test. A
// file already at path with the right digest is kept as is.
func Fetch(ctx context.Context, src Source, ref core.ArtifactRef, path string, pub ed25519.PublicKey) error {
	if err := ref.Validate(); err != nil {
		return fetchErr(core.ReasonDownloadFailed, "bad artifact reference: %v", err)
	}
	if pub != nil && ref.Signature == "" {
		return fetchErr(core.ReasonSignatureInvalid, "a public key is configured but the artifact is unsigned")
	}
	if got, err := fileSHA256(path); err == nil && got == ref.SHA256 {
		return writeSidecar(path, ref.SHA256)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return diskErr(err)
	}
	if err := journal.SyncDir(filepath.Dir(filepath.Dir(path))); err != nil {
		return diskErr(err)
	}
	rc, err := src.Open(ctx, ref)
	if err != nil {
		return &FetchError{Reason: core.ReasonDownloadFailed, Transient: true, Err: fmt.Errorf("open %s: %w", refName(ref), err)}
	}
	defer rc.Close()
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return diskErr(err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	// Read one byte past the declared size so that an oversize artifact is
	// caught without reading all of it.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, ref.Size+1))
	if err != nil {
		if isDiskFull(err) {
			return diskErr(err)
		}
		return &FetchError{Reason: core.ReasonDownloadFailed, Transient: true, Err: fmt.Errorf("read %s: %w", refName(ref), err)}
	}
	if n > ref.Size {
		return fetchErr(core.ReasonDownloadFailed, "%s is larger than its declared %d bytes", refName(ref), ref.Size)
	}
	if n < ref.Size {
		return fetchErr(core.ReasonDownloadFailed, "%s is %d bytes, declared %d", refName(ref), n, ref.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != ref.SHA256 {
		return fetchErr(core.ReasonChecksumMismatch, "%s has SHA-256 %s, want %s", refName(ref), got, ref.SHA256)
	}
	if pub != nil {
		sig, _ := base64.StdEncoding.DecodeString(ref.Signature)
		data, err := os.ReadFile(tmp)
		if err != nil {
			return diskErr(err)
		}
		if !ed25519.Verify(pub, data, sig) {
			return fetchErr(core.ReasonSignatureInvalid, "%s: ed25519 signature does not verify with the configured key", refName(ref))
		}
	}
	if err := f.Sync(); err != nil {
		return diskErr(err)
	}
	if err := f.Close(); err != nil {
		return diskErr(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return diskErr(err)
	}
	ok = true
	if err := writeSidecar(path, ref.SHA256); err != nil {
		return err
	}
	return nil
}

func writeSidecar(path, sum string) error {
	tmp := path + ".sha256.partial"
	if err := os.WriteFile(tmp, []byte(sum+"\n"), 0o644); err != nil {
		return diskErr(err)
	}
	if f, err := os.Open(tmp); err == nil {
		f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, path+".sha256"); err != nil {
		return diskErr(err)
	}
	if err := journal.SyncDir(filepath.Dir(path)); err != nil {
		return diskErr(err)
	}
	return nil
}

func diskErr(err error) error {
	if isDiskFull(err) {
		return &FetchError{Reason: core.ReasonDiskFull, Err: err}
	}
	return &FetchError{Reason: core.ReasonDownloadFailed, Err: err}
}

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func refName(ref core.ArtifactRef) string {
	if ref.Object != "" {
		return "object " + ref.Object
	}
	return ref.URL
}

// fileSHA256 hashes a file.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 returns the lower-case hex SHA-256 of a file.
func FileSHA256(path string) (string, error) { return fileSHA256(path) }

// HTTPSource fetches https:// artifacts.
type HTTPSource struct{ Client *http.Client }

// Open GETs ref.URL and fails on any status but 200.
func (s HTTPSource) Open(ctx context.Context, ref core.ArtifactRef) (io.ReadCloser, error) {
	if ref.URL == "" {
		return nil, errors.New("no URL in the artifact reference")
	}
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", ref.URL, resp.Status)
	}
	return resp.Body, nil
}

// ObjectStoreSource fetches objects from the "artifacts" object store over
// whatever JetStream connection JS returns at the time of the call.
type ObjectStoreSource struct {
	JS func() jetstream.JetStream
}

// Open reads ref.Object from the artifacts object store.
func (s ObjectStoreSource) Open(ctx context.Context, ref core.ArtifactRef) (io.ReadCloser, error) {
	if ref.Object == "" {
		return nil, errors.New("no object name in the artifact reference")
	}
	js := s.JS()
	if js == nil {
		return nil, errors.New("not connected to NATS")
	}
	// nats.go bounds a whole object Get by ctx's deadline, or by its 5 s
	// default when ctx has none: too short for an agent binary over a slow
	// link (a VM's virtio-serial channel, a cellular modem). Give the
	// download the same bound as an HTTPS one.
	var cancel context.CancelFunc = func() {}
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
	}
	os, err := js.ObjectStore(ctx, core.ObjectStoreArtifacts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("object store %s: %w", core.ObjectStoreArtifacts, err)
	}
	res, err := os.Get(ctx, ref.Object)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("object %s: %w", ref.Object, err)
	}
	return cancelOnClose{res, cancel}, nil
}

// cancelOnClose releases the download's context when the reader is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// MultiSource picks the object store or HTTPS by the reference's fields.
type MultiSource struct {
	Objects Source
	HTTP    Source
}

// Open dispatches on ref.Object / ref.URL.
func (m MultiSource) Open(ctx context.Context, ref core.ArtifactRef) (io.ReadCloser, error) {
	if ref.Object != "" {
		if m.Objects == nil {
			return nil, errors.New("no object store source configured")
		}
		return m.Objects.Open(ctx, ref)
	}
	if m.HTTP == nil {
		return nil, errors.New("no HTTPS source configured")
	}
	return m.HTTP.Open(ctx, ref)
}
