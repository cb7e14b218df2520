// Package image builds the disks the e2e VMs boot from.
//
// Three layers, each cached or cheap:
//
//  1. The base (hack/libvirt-image.sh): a debootstrapped Debian root
//     filesystem with systemd as PID 1, the cloud kernel and a busybox
//     initramfs, cached per machine by the content hash of the script and
//     its inputs. About a minute the first time, nothing after.
//  2. The root disk (Build): the base plus a Payload (the agent binary, its
//     systemd unit, anything else a device would have installed), written
//     into an ext4 image with mke2fs -d, never mounted. Cached by the hash
//     of the base and the payload's bytes.
//  3. Per VM: a qcow2 overlay on the root disk (Overlay, 0.05 s) and a tiny
//     ext4 configuration disk (ConfigDisk) mounted at /etc/flotilla.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Base is the built base (see hack/libvirt-image.sh).
type Base struct {
	RootFS string // root filesystem tree
	Kernel string // cloud kernel for direct kernel boot
	Initrd string // busybox initramfs that mounts /dev/vda and /dev/vdb
	Hash   string // content hash of the parts
}

// CacheDir is where images are cached: $FLOTILLA_CACHE/vm, default
// ~/.cache/flotilla/vm.
func CacheDir() string {
	if c := os.Getenv("FLOTILLA_CACHE"); c != "" {
		return filepath.Join(c, "vm")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "flotilla", "vm")
}

// EnsureBase runs the base build script (a no-op when cached) and returns
// the base. script is the path of hack/libvirt-image.sh.
func EnsureBase(ctx context.Context, script string) (Base, error) {
	cmd := exec.CommandContext(ctx, script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Base{}, fmt.Errorf("build VM base with %s: %w\n%s", script, err, stderr.String())
	}
	var b Base
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "ROOTFS":
			b.RootFS = v
		case "KERNEL":
			b.Kernel = v
		case "INITRD":
			b.Initrd = v
		case "HASH":
			b.Hash = v
		}
	}
	for name, p := range map[string]string{"ROOTFS": b.RootFS, "KERNEL": b.Kernel, "INITRD": b.Initrd} {
		if _, err := os.Stat(p); p == "" || err != nil {
			return Base{}, fmt.Errorf("build VM base: %s printed no usable %s (got %q)", script, name, p)
		}
	}
	if b.Hash == "" {
		return Base{}, fmt.Errorf("build VM base: %s printed no HASH", script)
	}
	return b, nil
}

// File is one file a payload installs.
type File struct {
	Path string      // absolute path inside the guest
	Mode os.FileMode // permission bits; 0 means 0644
	Data []byte      // contents, or
	Src  string      // a host file to copy (when Data is nil)
}

// Payload is what is installed on top of the base, as a device's
// provisioning would install it.
type Payload struct {
	Files []File
	// Symlinks maps a guest path to its target (e.g. the agent's current
	// link).
	Symlinks map[string]string
	// Enable lists systemd units to enable (systemctl --root enable, which
	// reads each unit's [Install] section).
	Enable []string
}

// hash is the payload's content hash, independent of map order.
func (p Payload) hash(base Base) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "base %s\n", base.Hash)
	files := append([]File(nil), p.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		data := f.Data
		if data == nil {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return "", fmt.Errorf("payload file %s: %w", f.Path, err)
			}
			data = b
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(h, "file %s %o %x\n", f.Path, f.Mode, sum)
	}
	links := make([]string, 0, len(p.Symlinks))
	for k := range p.Symlinks {
		links = append(links, k)
	}
	sort.Strings(links)
	for _, k := range links {
		fmt.Fprintf(h, "link %s %s\n", k, p.Symlinks[k])
	}
	enable := append([]string(nil), p.Enable...)
	sort.Strings(enable)
	fmt.Fprintf(h, "enable %s\n", strings.Join(enable, " "))
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// DiskSize is the root disk's (sparse) size.
const DiskSize = "1G"

// keepDisks is how many built root disks stay cached.
const keepDisks = 6

// Build returns a raw ext4 root disk holding base plus payload, building it
// when it is not cached.
func Build(ctx context.Context, base Base, p Payload) (string, error) {
	sum, err := p.hash(base)
	if err != nil {
		return "", err
	}
	dir := CacheDir()
	disk := filepath.Join(dir, "disk-"+sum+".img")
	if _, err := os.Stat(disk); err == nil {
		now := time.Now()
		os.Chtimes(disk, now, now) // most recently used: pruned last
		return disk, nil
	}
	unlock, err := lock(filepath.Join(dir, ".disk.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(disk); err == nil {
		return disk, nil
	}
	staging, err := os.MkdirTemp(dir, "staging-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(staging)
	root := filepath.Join(staging, "root")
	// Hard links: instant, and the base is never written through them
	// because every payload file replaces its path instead of writing into
	// it.
	if err := run(ctx, "cp", "-al", base.RootFS, root); err != nil {
		return "", err
	}
	for _, f := range p.Files {
		if err := install(root, f); err != nil {
			return "", err
		}
	}
	for _, link := range sortedKeys(p.Symlinks) {
		dst := guestPath(root, link)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		os.Remove(dst)
		if err := os.Symlink(p.Symlinks[link], dst); err != nil {
			return "", fmt.Errorf("payload symlink %s: %w", link, err)
		}
	}
	if len(p.Enable) > 0 {
		args := append([]string{"--root=" + root, "enable"}, p.Enable...)
		if err := run(ctx, "systemctl", args...); err != nil {
			return "", fmt.Errorf("enable %v: %w", p.Enable, err)
		}
	}
	tmp := disk + ".tmp"
	if err := run(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "flotilla-root", "-d", root, tmp, DiskSize); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, disk); err != nil {
		return "", err
	}
	prune(dir)
	return disk, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func guestPath(root, p string) string { return filepath.Join(root, filepath.Clean("/"+p)) }

func install(root string, f File) error {
	if !filepath.IsAbs(f.Path) {
		return fmt.Errorf("payload file %q: path must be absolute", f.Path)
	}
	dst := guestPath(root, f.Path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// Replace, never write through: dst may be a hard link into the base.
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("payload file %s: %w", f.Path, err)
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("payload file %s: %w", f.Path, err)
	}
	defer out.Close()
	if f.Data != nil {
		_, err = out.Write(f.Data)
	} else {
		var in *os.File
		in, err = os.Open(f.Src)
		if err == nil {
			_, err = io.Copy(out, in)
			in.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("payload file %s: %w", f.Path, err)
	}
	if err := out.Chmod(mode); err != nil { // umask-proof
		return err
	}
	return out.Close()
}

// prune removes all but the keepDisks most recently used root disks.
func prune(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "disk-*.img"))
	type aged struct {
		path string
		mod  time.Time
	}
	var disks []aged
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil {
			disks = append(disks, aged{m, st.ModTime()})
		}
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].mod.After(disks[j].mod) })
	for i := keepDisks; i < len(disks); i++ {
		os.Remove(disks[i].path)
	}
}

// Overlay creates a qcow2 overlay at dst backed by the raw disk base. The
// base is never written.
func Overlay(ctx context.Context, base, dst string) error {
	return run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, dst)
}

// ConfigDisk writes a small ext4 image at dst holding files (name →
// contents), which the guest mounts read-only at /etc/flotilla.
func ConfigDisk(ctx context.Context, dst string, files map[string][]byte) error {
	dir, err := os.MkdirTemp(filepath.Dir(dst), "config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, name := range sortedKeys2(files) {
		if strings.Contains(name, "/") {
			return fmt.Errorf("config file %q: no directories", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o600); err != nil {
			return err
		}
	}
	return run(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "flotilla-cfg", "-d", dir, dst, "8M")
}

func sortedKeys2(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// lock takes an exclusive flock on path; the returned func releases it.
func lock(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
