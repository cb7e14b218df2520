package main

import (
	"github.com/nats-io/nats.go"

	"github.com/flotilla-fleet/flotilla/agent/config"
	"github.com/flotilla-fleet/flotilla/agent/transport/vport"
)

// vportDialer returns the virtio-serial dialer when nats_vport is set (VM
// guests without an IP network; see agent/transport/vport), else nil.
func vportDialer(cfg config.Config) (nats.CustomDialer, error) {
	if cfg.NATSVport == "" {
		return nil, nil
	}
	return &vport.Dialer{Path: cfg.NATSVport}, nil
}
