package hotrestart

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/quic-go/quic-go"

	"github.com/edgeproxy/edge/hotrestart/quicfwd"
)

// Options configure a Process.
type Options struct {
	// BaseID tells apart edges that run side by side on one machine: it
	// names the control socket and the shared stats region.
	BaseID int
	// Logger receives the protocol's logs; nil discards them.
	Logger *slog.Logger
	// PIDFile, when set, is written with the PID of the newest ready
	// process (for systemd's PIDFile=).
	PIDFile string
	// ReadyTimeout bounds how long a child may take to become ready
	// before it is killed and the restart fails (default 2 minutes).
	ReadyTimeout time.Duration
	// Binary is this build's version, shown to the other side.
	Binary string
}

// Process is one generation of a hot-restartable edge: its sockets (all
// inherited from the previous generation when there is one), its link to
// that parent, and the control socket through which the next generation is
// started.
type Process struct {
	o       Options
	log     *slog.Logger
	upg     *tableflip.Upgrader
	ctlPath string
	ctl     net.Listener

	epoch int
	// The link with the parent (generation > 0).
	parent          *net.UnixConn
	parentPID       int
	parentListeners []string
	ticketKeys      []byte
	// quicKeys: the stateless reset key then the token key.
	quicKeys []byte
	// forwardTo holds, per UDP socket key, where packets of the parent's
	// QUIC connections go (until the socket is opened).
	forwardTo map[string]*net.UnixConn

	// exportKeys returns the TLS session ticket keys a child gets;
	// exportStaples the OCSP staples.
	exportKeys    func() []byte
	exportStaples func() [][]byte
	staples       [][]byte // the parent's
	// adopt serves a connection the parent handed over.
	adopt func(listener string, c net.Conn) error

	mu    sync.Mutex
	bound []string // "network address" of every socket opened
	// udp are the QUIC sockets opened, by key; handoffs, per key, the
	// forwarding socket's end this process reads once a child took over.
	udp        map[string]*quicfwd.Conn
	handoffs   map[string]*net.UnixConn
	readyDone  bool
	restarting bool
	replaced   bool
	child      *childLink

	replacedC     chan struct{} // closed when a child has taken over
	terminate     chan struct{} // closed when the child asks this process to end now
	terminateOnce sync.Once
}

// childLink is the control connection with a child being started or that
// took over.
type childLink struct {
	pid  int
	conn *net.UnixConn
	// failure is the reason the child reported for giving up.
	failure string
	done    chan struct{} // closed when the child's connection ends
}

// Start sets up this process's part in hot restarts. In a child it greets
// the parent and receives the epoch and TLS session ticket keys; in the
// first generation it makes sure no other edge uses the base id.
func Start(o Options) (*Process, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	path, err := SocketPath(o.BaseID)
	if err != nil {
		return nil, err
	}
	upg, err := tableflip.New(tableflip.Options{PIDFile: o.PIDFile, UpgradeTimeout: o.ReadyTimeout})
	if err != nil {
		return nil, fmt.Errorf("hot restart: %w", err)
	}
	p := &Process{o: o, log: o.Logger, upg: upg, ctlPath: path, terminate: make(chan struct{}), replacedC: make(chan struct{}),
		forwardTo: map[string]*net.UnixConn{}, udp: map[string]*quicfwd.Conn{}, handoffs: map[string]*net.UnixConn{}}
	if upg.HasParent() {
		if err := p.greetParent(); err != nil {
			upg.Stop()
			return nil, err
		}
	} else {
		if c, err := dial(path, time.Second); err == nil {
			c.Close()
			upg.Stop()
			return nil, fmt.Errorf("an edge with --base-id %d is already running (control socket %s): "+
				"replace it with `edge restart --base-id %d`, or give this one another --base-id", o.BaseID, path, o.BaseID)
		}
		os.Remove(path) // left by a process that died
		p.quicKeys = make([]byte, 64)
		rand.Read(p.quicKeys)
	}
	ln, err := upg.Listen("unixpacket", path)
	if err != nil {
		p.Fail(err)
		upg.Stop()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		upg.Stop()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	p.ctl = ln
	return p, nil
}

// greetParent introduces this child to its parent and takes what it hands
// over.
func (p *Process) greetParent() error {
	c, err := dial(p.ctlPath, 5*time.Second)
	if err != nil {
		return fmt.Errorf("hot restart: reaching the parent at %s: %w", p.ctlPath, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := send(c, &message{Op: opHello, Version: ProtocolVersion, PID: os.Getpid(), Binary: p.o.Binary}); err != nil {
		c.Close()
		return fmt.Errorf("hot restart: %w", err)
	}
	var m message
	fds, err := recv(c, make([]byte, maxMessage), make([]byte, syscall.CmsgSpace(4*64)), &m)
	if err != nil {
		c.Close()
		return fmt.Errorf("hot restart: waiting for the parent's welcome: %w", err)
	}
	if len(fds) != len(m.Packets) {
		closeFDs(fds)
		c.Close()
		return fmt.Errorf("hot restart: the welcome names %d UDP sockets but carries %d descriptors", len(m.Packets), len(fds))
	}
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "quic-forward")
		uc, err := quicfwd.FileUnixConn(f)
		f.Close()
		if err != nil {
			c.Close()
			return fmt.Errorf("hot restart: the forwarding socket for %s: %w", m.Packets[i], err)
		}
		p.forwardTo[m.Packets[i]] = uc
	}
	if m.Op != opWelcome {
		c.Close()
		return fmt.Errorf("hot restart: the parent answered %q instead of %q", m.Op, opWelcome)
	}
	if m.Error != "" {
		c.Close()
		return fmt.Errorf("hot restart: the running edge (pid %d) refused this process: %s", m.PID, m.Error)
	}
	c.SetDeadline(time.Time{})
	p.parent, p.parentPID, p.epoch = c, m.PID, m.Epoch
	p.parentListeners, p.ticketKeys, p.staples = m.Listeners, m.TicketKeys, m.Staples
	if len(m.QUICKeys) != 64 {
		c.Close()
		return fmt.Errorf("hot restart: the parent sent %d bytes of QUIC keys, want 64", len(m.QUICKeys))
	}
	p.quicKeys = m.QUICKeys
	p.log.Info("hot restart: taking over", "epoch", p.epoch, "parent_pid", p.parentPID, "parent_binary", m.Binary)
	return nil
}

// Epoch is this process's generation: 0 for the first, one more than the
// parent's for a child.
func (p *Process) Epoch() int { return p.epoch }

// TicketKeys are the TLS session ticket keys exported by the parent (nil
// in the first generation).
func (p *Process) TicketKeys() []byte { return p.ticketKeys }

// Staples are the OCSP staples the parent served (nil in the first
// generation).
func (p *Process) Staples() [][]byte { return p.staples }

// SetStaples gives the function that exports this process's OCSP staples
// to a child. Call it before Ready.
func (p *Process) SetStaples(export func() [][]byte) { p.exportStaples = export }

// SetTicketKeys gives the function that exports this process's ticket keys
// to a child. Call it before Ready.
func (p *Process) SetTicketKeys(export func() []byte) { p.exportKeys = export }

// Listen returns the listening socket for network and addr: the one
// inherited from the parent, or a new one when the parent had none there.
// A socket the parent serves but did not pass on is an error: binding it
// anew would fail or steal the port.
func (p *Process) Listen(network, addr string) (net.Listener, error) {
	key := network + " " + addr
	ln, err := p.upg.Fds.Listener(network, addr)
	if err == nil && ln == nil {
		if err := p.mayBind(key); err != nil {
			return nil, err
		}
		ln, err = p.upg.Fds.Listen(network, addr)
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.bound = append(p.bound, key)
	p.mu.Unlock()
	return ln, nil
}

// mayBind refuses to bind a socket ("network address") anew that the
// parent serves but did not pass on: binding it would fail or steal it.
func (p *Process) mayBind(key string) error {
	if p.parent != nil && slices.Contains(p.parentListeners, key) {
		return fmt.Errorf("%s is served by the parent (pid %d) but was not inherited; refusing to bind it anew", key, p.parentPID)
	}
	return nil
}

// ListenPacket is Listen for the UDP sockets of HTTP/3. The socket comes
// wrapped (hotrestart/quicfwd): packets of the parent's QUIC connections
// that this process reads go back to the parent while it drains, and once
// a child takes over this process reads only what the child forwards.
func (p *Process) ListenPacket(network, addr string) (net.PacketConn, error) {
	key := network + " " + addr
	pc, err := p.upg.Fds.PacketConn(network, addr)
	if err == nil && pc == nil {
		if err := p.mayBind(key); err != nil {
			return nil, err
		}
		pc, err = p.upg.Fds.ListenPacket(network, addr)
	}
	if err != nil {
		return nil, err
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("%s %s: not a UDP socket (%T)", network, addr, pc)
	}
	c, err := quicfwd.New(udp, uint32(p.epoch), p.log)
	if err != nil {
		udp.Close()
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if fwd := p.forwardTo[key]; fwd != nil {
		delete(p.forwardTo, key)
		if err := c.ForwardOlder(fwd); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s %s: forwarding to the parent: %w", network, addr, err)
		}
	}
	p.bound = append(p.bound, key)
	p.udp[key] = c
	return c, nil
}

// QUICConnectionIDGenerator issues QUIC connection IDs that name this
// generation, so that the next one forwards their packets here.
func (p *Process) QUICConnectionIDGenerator() quic.ConnectionIDGenerator {
	return quicfwd.NewCIDGenerator(uint32(p.epoch))
}

// QUICKeys are the stateless reset and address token keys all generations
// share, so that a reset or a token from one is valid for the next.
func (p *Process) QUICKeys() (*quic.StatelessResetKey, *quic.TokenGeneratorKey) {
	var r quic.StatelessResetKey
	var t quic.TokenGeneratorKey
	copy(r[:], p.quicKeys[:32])
	copy(t[:], p.quicKeys[32:])
	return &r, &t
}

// HandOffPackets makes this process's QUIC sockets read only the packets
// the child forwards (call it once the child took over).
func (p *Process) HandOffPackets() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, c := range p.udp {
		if end := p.handoffs[key]; end != nil {
			delete(p.handoffs, key)
			if err := c.Handoff(end); err != nil {
				p.log.Warn("hot restart: QUIC packet handoff", "socket", key, "err", err)
			}
		}
	}
}

// Fail tells the parent why this child gives up; the parent reports it to
// whoever asked for the restart and keeps serving.
func (p *Process) Fail(reason error) {
	if p.parent == nil {
		return
	}
	if err := send(p.parent, &message{Op: opFailed, PID: os.Getpid(), Error: reason.Error()}); err != nil {
		p.log.Warn("hot restart: telling the parent why this process failed", "err", err)
	}
}

// Ready declares this process ready to serve: every listener the parent
// had and this config still has was inherited (Listen refuses otherwise).
// The parent then stops accepting and drains, handing over idle
// connections to adopt. From now on this process answers restart requests.
func (p *Process) Ready(adopt func(listener string, c net.Conn) error) error {
	p.adopt = adopt
	if p.parent != nil {
		go p.readParent()
	}
	if err := p.upg.Ready(); err != nil {
		return fmt.Errorf("hot restart: %w", err)
	}
	p.mu.Lock()
	p.readyDone = true
	p.mu.Unlock()
	go p.serveControl()
	p.log.Info("hot restart: ready", "epoch", p.epoch, "pid", os.Getpid(), "control_socket", p.ctlPath)
	return nil
}

// readParent receives what the draining parent hands over: idle
// connections. It ends when the parent exits.
func (p *Process) readParent() {
	buf, oob := make([]byte, maxMessage), make([]byte, syscall.CmsgSpace(4*16))
	for {
		var m message
		fds, err := recv(p.parent, buf, oob, &m)
		if err != nil {
			p.log.Info("hot restart: the parent has gone", "parent_pid", p.parentPID)
			p.mu.Lock()
			for _, c := range p.udp {
				c.StopForwarding()
			}
			for key, fwd := range p.forwardTo { // sockets this config dropped
				fwd.Close()
				delete(p.forwardTo, key)
			}
			p.mu.Unlock()
			return
		}
		if m.Op != opConn || len(fds) != 1 {
			closeFDs(fds)
			p.log.Warn("hot restart: unexpected message from the parent", "op", m.Op, "fds", len(fds))
			continue
		}
		f := os.NewFile(uintptr(fds[0]), "handed-over")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			p.log.Warn("hot restart: a handed-over connection", "err", err)
			continue
		}
		if err := p.adopt(m.Listener, c); err != nil {
			p.log.Debug("hot restart: closing a handed-over connection", "listener", m.Listener, "err", err)
			c.Close()
		}
	}
}

// Exit is closed once a child has taken over: this process must drain.
func (p *Process) Exit() <-chan struct{} { return p.replacedC }

// Terminate is closed when a newer generation asks this process to end
// at once (a third generation is starting).
func (p *Process) Terminate() <-chan struct{} { return p.terminate }

// Handoff passes an idle connection of listener to the child that took
// over (see edge.Handoff).
func (p *Process) Handoff(listener string, c net.Conn) bool {
	p.mu.Lock()
	child := p.child
	p.mu.Unlock()
	if child == nil {
		return false
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = send(child.conn, &message{Op: opConn, Listener: listener}, int(fd))
	}); err != nil || serr != nil {
		p.log.Debug("hot restart: handing over a connection", "listener", listener, "err", errors.Join(err, serr))
		return false
	}
	return true
}

// Stop ends this process's part: no more restarts; the control socket is
// removed unless a child took it over.
func (p *Process) Stop() {
	p.mu.Lock()
	ctl, failedChild := p.ctl, p.parent != nil && !p.readyDone
	p.mu.Unlock()
	if ctl != nil {
		ctl.Close()
	}
	if failedChild {
		// tableflip's Stop before a successful upgrade unlinks every unix
		// socket this process holds, the control socket included, which
		// the parent still serves on: a child that gives up only exits.
		return
	}
	p.upg.Stop()
}

// StopControl stops answering restart requests (this process was replaced:
// the child answers them now).
func (p *Process) StopControl() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctl != nil {
		p.ctl.Close()
	}
}

// serveControl answers the control socket until it is closed.
func (p *Process) serveControl() {
	for {
		c, err := p.ctl.Accept()
		if err != nil {
			return
		}
		go p.handle(c.(*net.UnixConn))
	}
}

func (p *Process) handle(c *net.UnixConn) {
	cred, err := peerCred(c)
	if err != nil || int(cred.Uid) != os.Getuid() {
		p.log.Warn("hot restart: control connection from another user refused", "err", err)
		c.Close()
		return
	}
	var m message
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fds, err := recv(c, make([]byte, maxMessage), nil, &m)
	closeFDs(fds)
	if err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch m.Op {
	case opRestart:
		defer c.Close()
		res, err := p.Restart()
		reply := &message{Op: opResult, PID: res.PID, Epoch: res.Epoch}
		if err != nil {
			reply.Error = err.Error()
			reply.Retry = errors.Is(err, errReplaced)
		}
		if err := send(c, reply); err != nil {
			p.log.Warn("hot restart: answering a restart request", "err", err)
		}
	case opHello:
		p.welcome(c, cred, &m)
	default:
		p.log.Warn("hot restart: unexpected control message", "op", m.Op)
		c.Close()
	}
}

// errReplaced: the request reached a process a child has replaced.
var errReplaced = errors.New("this edge has been replaced and is draining; ask again")

// welcome answers the hello of the child being started.
func (p *Process) welcome(c *net.UnixConn, cred *syscall.Ucred, hello *message) {
	reply := &message{Op: opWelcome, PID: os.Getpid(), Epoch: p.epoch + 1, Binary: p.o.Binary}
	p.mu.Lock()
	starting := p.restarting && p.child == nil
	p.mu.Unlock()
	ppid, err := parentPID(cred.Pid)
	switch {
	case !starting:
		reply.Error = "no restart is under way here"
	case err != nil || ppid != os.Getpid():
		reply.Error = fmt.Sprintf("process %d is not a child of this edge (pid %d)", cred.Pid, os.Getpid())
	case hello.Version != ProtocolVersion:
		reply.Error = fmt.Sprintf("the new binary (%s) speaks control protocol version %d and this edge (%s) speaks %d: "+
			"these builds cannot hot restart into each other; stop this edge and start the new one instead",
			hello.Binary, hello.Version, p.o.Binary, ProtocolVersion)
	}
	if reply.Error != "" {
		p.log.Warn("hot restart: refusing a child", "pid", cred.Pid, "reason", reply.Error)
		send(c, reply)
		c.Close()
		if starting {
			p.mu.Lock()
			p.child = &childLink{pid: int(cred.Pid), failure: reply.Error, done: closedChan()}
			p.mu.Unlock()
		}
		return
	}
	if p.exportKeys != nil {
		reply.TicketKeys = p.exportKeys()
	}
	if p.exportStaples != nil {
		reply.Staples = p.exportStaples()
		if b, _ := json.Marshal(reply); len(b) > maxMessage-4096 {
			p.log.Info("hot restart: too many OCSP staples to hand over; the child fetches its own", "staples", len(reply.Staples))
			reply.Staples = nil
		}
	}
	reply.QUICKeys = p.quicKeys
	childEnds, err := p.forwardingPairs(reply)
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	if err != nil {
		reply.Error = err.Error()
		p.log.Warn("hot restart: refusing a child", "pid", cred.Pid, "reason", reply.Error)
		send(c, reply)
		c.Close()
		p.mu.Lock()
		p.child = &childLink{pid: int(cred.Pid), failure: reply.Error, done: closedChan()}
		p.mu.Unlock()
		return
	}
	link := &childLink{pid: int(cred.Pid), conn: c, done: make(chan struct{})}
	p.mu.Lock()
	p.child = link
	p.mu.Unlock()
	fds := make([]int, len(childEnds))
	for i, f := range childEnds {
		fds[i] = int(f.Fd())
	}
	if err := send(c, reply, fds...); err != nil {
		p.log.Warn("hot restart: welcoming the child", "pid", cred.Pid, "err", err)
	}
	go p.readChild(link)
}

// forwardingPairs fills in the welcome's sockets and, for each QUIC
// socket, makes the datagram pair through which the child will forward
// this process's packets; it keeps this end and returns the child's.
func (p *Process) forwardingPairs(reply *message) ([]*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	reply.Listeners = slices.Clone(p.bound)
	for _, end := range p.handoffs { // from an earlier child that failed
		end.Close()
	}
	clear(p.handoffs)
	var childEnds []*os.File
	for key := range p.udp {
		mine, theirs, err := quicfwd.NewPair()
		if err != nil {
			return childEnds, fmt.Errorf("QUIC forwarding socket for %s: %w", key, err)
		}
		childEnds = append(childEnds, theirs)
		uc, err := quicfwd.FileUnixConn(mine)
		mine.Close()
		if err != nil {
			return childEnds, fmt.Errorf("QUIC forwarding socket for %s: %w", key, err)
		}
		p.handoffs[key] = uc
		reply.Packets = append(reply.Packets, key)
	}
	return childEnds, nil
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// readChild follows what the child says: why it failed, or that this
// process must end now.
func (p *Process) readChild(link *childLink) {
	defer close(link.done)
	buf := make([]byte, maxMessage)
	for {
		var m message
		fds, err := recv(link.conn, buf, nil, &m)
		closeFDs(fds)
		if err != nil {
			return
		}
		switch m.Op {
		case opFailed:
			p.mu.Lock()
			link.failure = m.Error
			p.mu.Unlock()
		case opTerminate:
			p.log.Warn("hot restart: a newer generation is starting; ending now", "child_pid", link.pid)
			p.terminateOnce.Do(func() { close(p.terminate) })
		}
	}
}

// Restart starts a child from the binary and config on disk and waits
// until it is ready (this process must then drain: see Exit) or has failed
// (this process goes on serving). It refuses a restart while another is
// starting. When this process's own parent still drains, that parent is
// told to end first, so that at most three generations ever live.
func (p *Process) Restart() (Result, error) {
	p.mu.Lock()
	switch {
	case p.replaced:
		p.mu.Unlock()
		return Result{}, errReplaced
	case !p.readyDone:
		p.mu.Unlock()
		return Result{}, errors.New("this edge is still starting; ask again once it is ready")
	case p.restarting:
		pid := 0
		if p.child != nil {
			pid = p.child.pid
		}
		p.mu.Unlock()
		return Result{}, fmt.Errorf("a restart is already under way (new process pid %d is starting); wait for it to finish", pid)
	}
	p.restarting, p.child = true, nil
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.restarting = false
		p.mu.Unlock()
	}()

	if err := p.endParent(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	p.log.Info("hot restart: starting a new process", "epoch", p.epoch+1)
	err := p.upg.Upgrade()
	p.mu.Lock()
	link := p.child
	p.mu.Unlock()
	if err != nil {
		reason := err.Error()
		if link != nil {
			// The child may have said why before it exited.
			select {
			case <-link.done:
			case <-time.After(2 * time.Second):
			}
			p.mu.Lock()
			if link.failure != "" {
				reason = link.failure
			}
			p.mu.Unlock()
		}
		p.log.Error("hot restart failed; this process keeps serving", "reason", reason)
		return Result{}, errors.New(reason)
	}
	if link == nil {
		// Ready without a hello: cannot happen with this binary's child.
		return Result{}, errors.New("the new process became ready without greeting this one")
	}
	p.mu.Lock()
	p.replaced = true
	p.mu.Unlock()
	close(p.replacedC)
	p.log.Info("hot restart: the new process is ready; draining", "child_pid", link.pid, "epoch", p.epoch+1, "took", time.Since(start))
	return Result{PID: link.pid, Epoch: p.epoch + 1}, nil
}

// endParent makes a parent that still drains end now and waits for it to
// exit (tableflip starts no child before that).
func (p *Process) endParent() error {
	if p.parent == nil || p.parentExited(50*time.Millisecond) {
		return nil
	}
	p.log.Info("hot restart: the previous generation is still draining; telling it to end now", "parent_pid", p.parentPID)
	if err := send(p.parent, &message{Op: opTerminate, PID: os.Getpid()}); err != nil {
		p.log.Warn("hot restart: telling the previous generation to end", "err", err)
	}
	if !p.parentExited(15 * time.Second) {
		return fmt.Errorf("the previous generation (pid %d) did not end within 15s of being told to", p.parentPID)
	}
	return nil
}

// parentExited waits up to d for the parent to exit.
func (p *Process) parentExited(d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return !errors.Is(p.upg.WaitForParent(ctx), context.DeadlineExceeded)
}
