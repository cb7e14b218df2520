package natstest

import (
	"net"
	"strconv"
	"sync"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 between NATS clients and a server that
// a test can black-hole: bytes either way are read and thrown away while
// the connections stay open, which is what a dead link (a partition the
// client has not noticed) looks like to nats.go. It is closed by tb.Cleanup.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	dropIn  bool // server → client bytes are discarded
	dropOut bool // client → server bytes are discarded
	conns   []net.Conn
	closed  bool
	wg      sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target
// ("host:port" or a nats:// URL).
func NewProxy(tb TB, target string) *Proxy {
	tb.Helper()
	if len(target) > 7 && target[:7] == "nats://" {
		target = target[7:]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// URL is the client URL of the proxy.
func (p *Proxy) URL() string {
	return "nats://127.0.0.1:" + strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port)
}

// Blackhole discards the bytes of one or both directions from now on:
// in is server → client, out is client → server. Blackhole(false, false)
// heals the link.
func (p *Proxy) Blackhole(in, out bool) {
	p.mu.Lock()
	p.dropIn, p.dropOut = in, out
	p.mu.Unlock()
}

// Heal lets bytes through again (connections that survived carry on).
func (p *Proxy) Heal() { p.Blackhole(false, false) }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close() // the server is down: connection refused, as without the proxy
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s, true)  // server → client
		go p.pipe(s, c, false) // client → server
	}
}

// pipe copies src to dst, discarding while its direction is black-holed.
func (p *Proxy) pipe(dst, src net.Conn, in bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			drop := p.dropOut
			if in {
				drop = p.dropIn
			}
			p.mu.Unlock()
			if !drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			// EOF or closed: close the other side too, but not through a
			// black hole (the FIN would be lost as well) until it heals.
			p.waitHealed(in)
			return
		}
	}
}

// waitHealed waits while the direction is black-holed and the proxy open.
func (p *Proxy) waitHealed(in bool) {
	for {
		p.mu.Lock()
		drop := p.dropOut
		if in {
			drop = p.dropIn
		}
		closed := p.closed
		p.mu.Unlock()
		if !drop || closed {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
