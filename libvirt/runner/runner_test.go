package runner

import (
	"encoding/xml"
	"strings"
	"testing"
)

type domXML struct {
	Type string `xml:"type,attr"`
	Name string `xml:"name"`
	OS   struct {
		Kernel  string `xml:"kernel"`
		Initrd  string `xml:"initrd"`
		Cmdline string `xml:"cmdline"`
	} `xml:"os"`
	CPU struct {
		Mode string `xml:"mode,attr"`
	} `xml:"cpu"`
	Features struct {
		ACPI *struct{} `xml:"acpi"`
	} `xml:"features"`
	OnReboot string `xml:"on_reboot"`
	Devices  struct {
		Disks []struct {
			Source struct {
				File string `xml:"file,attr"`
			} `xml:"source"`
			Target struct {
				Dev string `xml:"dev,attr"`
			} `xml:"target"`
		} `xml:"disk"`
		Interfaces []struct{} `xml:"interface"`
		Channels   []struct {
			Type   string `xml:"type,attr"`
			Source struct {
				Mode string `xml:"mode,attr"`
				Path string `xml:"path,attr"`
			} `xml:"source"`
			Target struct {
				Type string `xml:"type,attr"`
				Name string `xml:"name,attr"`
			} `xml:"target"`
		} `xml:"channel"`
		Serial struct {
			Type   string `xml:"type,attr"`
			Source struct {
				Path   string `xml:"path,attr"`
				Append string `xml:"append,attr"`
			} `xml:"source"`
		} `xml:"serial"`
	} `xml:"devices"`
}

func TestDomainXMLIsAHeadlessTCGGuestWithNATSPorts(t *testing.T) {
	socks := []string{"/run/s/n0.sock", "/run/s/n1.sock"}
	x := domainXML("flotilla-e2e-r1-vm-a", Spec{Name: "vm-a", Kernel: "/k", Initrd: "/i", MemoryMiB: 512, Cmdline: "extra=1"},
		"/out/vm-a/root.qcow2", "/out/vm-a/config.img", "/out/vm-a/console.log", socks)
	var d domXML
	if err := xml.Unmarshal([]byte(x), &d); err != nil {
		t.Fatalf("domain XML does not parse: %v\n%s", err, x)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"domain type (TCG, no KVM)", d.Type, "qemu"},
		{"name", d.Name, "flotilla-e2e-r1-vm-a"},
		{"cpu mode (entropy early)", d.CPU.Mode, "maximum"},
		{"acpi (for shutdown)", d.Features.ACPI != nil, true},
		{"on_reboot", d.OnReboot, "destroy"},
		{"no network interface", len(d.Devices.Interfaces), 0},
		{"disks", len(d.Devices.Disks), 2},
		{"root disk", d.Devices.Disks[0].Source.File + " " + d.Devices.Disks[0].Target.Dev, "/out/vm-a/root.qcow2 vda"},
		{"config disk", d.Devices.Disks[1].Source.File + " " + d.Devices.Disks[1].Target.Dev, "/out/vm-a/config.img vdb"},
		{"console to a file, appended", d.Devices.Serial.Type + " " + d.Devices.Serial.Source.Path + " " + d.Devices.Serial.Source.Append, "file /out/vm-a/console.log on"},
		{"channels", len(d.Devices.Channels), 2},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	for i, ch := range d.Devices.Channels {
		if ch.Type != "unix" || ch.Source.Mode != "bind" || ch.Source.Path != socks[i] ||
			ch.Target.Type != "virtio" || ch.Target.Name != PortName(i) {
			t.Errorf("channel %d: %+v", i, ch)
		}
	}
	for _, want := range []string{"console=ttyS0", "root=/dev/vda", "extra=1"} {
		if !strings.Contains(d.OS.Cmdline, want) {
			t.Errorf("cmdline %q lacks %q", d.OS.Cmdline, want)
		}
	}
}

func TestDomainXMLEscapesPaths(t *testing.T) {
	x := domainXML("n", Spec{Kernel: "/a&b<c>'", Initrd: "/i"}, "/o", "/c", "/l", nil)
	var d domXML
	if err := xml.Unmarshal([]byte(x), &d); err != nil {
		t.Fatalf("domain XML does not parse: %v", err)
	}
	if d.OS.Kernel != "/a&b<c>'" {
		t.Fatalf("kernel path round-tripped as %q", d.OS.Kernel)
	}
}
