package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBase is a tiny root filesystem standing in for the debootstrapped one.
func fakeBase(t *testing.T) Base {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"etc/systemd/system", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("base\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Base{RootFS: root, Kernel: "/nonexistent", Initrd: "/nonexistent", Hash: "test-" + filepath.Base(dir)}
}

func need(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make libvirt-setup installs it)", tool)
		}
	}
}

// debugfsCat reads a file out of an ext4 image without mounting it.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

func debugfsStat(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "stat "+path, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs stat %s: %v", path, err)
	}
	return string(out)
}

func TestBuildInstallsThePayloadWithoutTouchingTheBase(t *testing.T) {
	need(t, "mke2fs", "debugfs", "systemctl", "cp")
	t.Setenv("FLOTILLA_CACHE", t.TempDir())
	base := fakeBase(t)
	bin := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(bin, []byte("#!/bin/sh\necho agent\n"), 0o755)
	unit := "[Service]\nExecStart=/var/lib/flotilla/current/flotilla-agent\n\n[Install]\nWantedBy=multi-user.target\n"
	p := Payload{
		Files: []File{
			{Path: "/var/lib/flotilla/versions/v1.0.0/flotilla-agent", Mode: 0o755, Src: bin},
			{Path: "/etc/systemd/system/flotilla-agent.service", Data: []byte(unit)},
			{Path: "/etc/hostname", Data: []byte("device\n")},
		},
		Symlinks: map[string]string{"/var/lib/flotilla/current": "versions/v1.0.0"},
		Enable:   []string{"flotilla-agent.service"},
	}
	disk, err := Build(context.Background(), base, p)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if got := debugfsCat(t, disk, "/etc/hostname"); got != "device\n" {
		t.Errorf("hostname in the image: %q", got)
	}
	if got := debugfsCat(t, disk, "/var/lib/flotilla/versions/v1.0.0/flotilla-agent"); !strings.Contains(got, "echo agent") {
		t.Errorf("agent binary in the image: %q", got)
	}
	if st := debugfsStat(t, disk, "/var/lib/flotilla/versions/v1.0.0/flotilla-agent"); !strings.Contains(st, "Mode:  0755") {
		t.Errorf("agent binary is not executable in the image:\n%s", st)
	}
	if st := debugfsStat(t, disk, "/var/lib/flotilla/current"); !strings.Contains(st, `Fast link dest: "versions/v1.0.0"`) {
		t.Errorf("current link in the image:\n%s", st)
	}
	if st := debugfsStat(t, disk, "/etc/systemd/system/multi-user.target.wants/flotilla-agent.service"); !strings.Contains(st, "flotilla-agent.service") {
		t.Errorf("unit not enabled:\n%s", st)
	}
	// The base was replaced in the copy, never written through a hard link.
	if b, _ := os.ReadFile(filepath.Join(base.RootFS, "etc/hostname")); string(b) != "base\n" {
		t.Fatalf("the base's /etc/hostname became %q", b)
	}

	again, err := Build(context.Background(), base, p)
	if err != nil || again != disk {
		t.Fatalf("second build of the same payload: %s, %v; want the cached %s", again, err, disk)
	}
	p.Files[2].Data = []byte("other\n")
	other, err := Build(context.Background(), base, p)
	if err != nil {
		t.Fatal(err)
	}
	if other == disk {
		t.Fatal("a changed payload reused the cached disk")
	}
}

func TestBuildRejectsRelativePaths(t *testing.T) {
	need(t, "mke2fs", "cp")
	t.Setenv("FLOTILLA_CACHE", t.TempDir())
	_, err := Build(context.Background(), fakeBase(t), Payload{Files: []File{{Path: "etc/x", Data: []byte("x")}}})
	if err == nil || !strings.Contains(err.Error(), "must be absolute") {
		t.Fatalf("got %v, want an error about the relative path", err)
	}
}

func TestConfigDiskHoldsTheFiles(t *testing.T) {
	need(t, "mke2fs", "debugfs")
	img := filepath.Join(t.TempDir(), "config.img")
	if err := ConfigDisk(context.Background(), img, map[string][]byte{"agent.yaml": []byte("device: vm-a\n")}); err != nil {
		t.Fatal(err)
	}
	if got := debugfsCat(t, img, "/agent.yaml"); got != "device: vm-a\n" {
		t.Fatalf("agent.yaml on the config disk: %q", got)
	}
	if err := ConfigDisk(context.Background(), img, map[string][]byte{"a/b": nil}); err == nil {
		t.Fatal("a config file name with a directory was accepted")
	}
}

func TestOverlayLeavesTheBaseAlone(t *testing.T) {
	need(t, "qemu-img")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	os.WriteFile(base, make([]byte, 1<<20), 0o644)
	ov := filepath.Join(dir, "vm.qcow2")
	if err := Overlay(context.Background(), base, ov); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "info", ov).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "backing file: "+base) || !strings.Contains(string(out), "backing file format: raw") {
		t.Fatalf("overlay info:\n%s", out)
	}
}
