package olympus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/protocol/types"
)

// Local-mode layout inside the work directory.
const (
	HomesDir = "homes" // workDir/homes/{olympus,replica-<id>}
	LogsDir  = "logs"  // workDir/logs/replica-<id>.log
)

// DefaultGrace is how long a stopping replica gets between SIGTERM and SIGKILL.
const DefaultGrace = 5 * time.Second

// LocalListen is where local-mode processes listen: loopback, OS-chosen
// ports, TCP only. Offered QUIC too, libp2p dials QUIC, which on loopback
// costs more: diembft bench latency mode (n = 4, two interleaved pairs, load
// 6-7) gave p50 25.4/28.0 ms and 6.7/7.3 replica CPU s per 1k ops over QUIC
// against 21.7/19.7 ms and 5.9/5.4 s over TCP, with equal throughput; and a
// killed replica's TCP connections close at once, where QUIC's linger until
// their idle timeout. LAN homes (diembft testnet) still listen on both.
var LocalListen = []string{"/ip4/127.0.0.1/tcp/0"}

// LocalOptions tune RunLocal.
type LocalOptions struct {
	LogLevel    string        // replicas' --log-level; "" means "info"
	Grace       time.Duration // SIGTERM to SIGKILL when stopping a replica; 0 means DefaultGrace
	ReplicaArgs []string      // appended to every replica's command line
	// OnExit, if set, is called (on its own goroutine per exit) whenever a
	// replica process ends; requested tells a Kill/Stop/shutdown from a crash.
	OnExit func(id types.ReplicaID, err error, requested bool)
}

// Local is a committee running on this machine: Olympus in this process and
// one child process per replica. Its methods are safe for concurrent use;
// the fault-injection layer uses Kill, Stop, Restart, Pause and Resume.
type Local struct {
	Dir     string   // the work directory
	Service *Service // Olympus
	Addrs   []string // Olympus's full multiaddrs
	Addr    string   // the one handed to replicas (TCP on loopback)

	bin      string
	opts     LocalOptions
	procs    []*replicaProc
	failures []config.Failure // the run's faults (faults.go)

	mu       sync.Mutex
	closing  bool
	crashes  []exitEvent   // unrequested exits, oldest first
	crashed  chan struct{} // closed and replaced on every unrequested exit
	stopOnce sync.Once
	done     chan struct{}
}

type exitEvent struct {
	id  types.ReplicaID
	err error
}

// RunLocal runs cfg's committee on this machine. It writes the homes into
// workDir/homes (the testnet layout, listening on 127.0.0.1 with OS-chosen
// ports), starts Olympus on 127.0.0.1 in this process, writes
// workDir/multiaddrs, and starts one process per replica:
//
//	replicaBin --home workDir/homes/replica-<id> --olympus <addr> --log-level <lvl>
//
// with stdout and stderr appended to workDir/logs/replica-<id>.log. It
// returns once the processes are started (WaitReady waits for the roster).
// When ctx is cancelled, or on Close, every replica gets SIGTERM, then
// SIGKILL after the grace period, and Olympus stops; Done is closed after.
//
// Clients are not created here: they generate their own signing keys.
func RunLocal(ctx context.Context, cfg *config.Config, workDir string, replicaBin string, opts LocalOptions) (*Local, error) {
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	bin, err := exec.LookPath(replicaBin)
	if err != nil {
		return nil, fmt.Errorf("replica binary %s: %v", replicaBin, unwrapExec(err))
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	if workDir, err = filepath.Abs(workDir); err != nil {
		return nil, err
	}

	n := cfg.NumReplicas()
	listen := make([][]string, n)
	for i := range listen {
		listen[i] = LocalListen
	}
	homes := filepath.Join(workDir, HomesDir)
	if _, err := writeHomes(homes, homesSpec{
		chainID:       cfg.Committee.ChainID,
		f:             cfg.Committee.F,
		params:        ParamsFromConfig(cfg),
		olympusListen: LocalListen,
		replicaListen: listen,
	}); err != nil {
		return nil, err
	}
	home, err := LoadOlympusHome(filepath.Join(homes, OlympusDir))
	if err != nil {
		return nil, err
	}
	svc, err := StartService(ctx, home, nil)
	if err != nil {
		return nil, err
	}
	l := &Local{
		Dir:      workDir,
		Service:  svc,
		Addrs:    svc.Addrs(),
		bin:      bin,
		opts:     opts,
		failures: cfg.Failures,
		crashed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.Addr = PreferredAddr(l.Addrs)
	fail := func(err error) (*Local, error) {
		l.shutdown()
		return nil, err
	}
	if err := WriteMultiaddrs(workDir, l.Addrs); err != nil {
		return fail(fmt.Errorf("write %s: %v", MultiaddrsFile, unwrapPath(err)))
	}
	if err := os.MkdirAll(filepath.Join(workDir, LogsDir), 0o755); err != nil {
		return fail(err)
	}
	for i := range n {
		id := types.ReplicaID(i)
		p := &replicaProc{
			id:      id,
			home:    filepath.Join(homes, ReplicaDir(id)),
			logPath: filepath.Join(workDir, LogsDir, ReplicaDir(id)+".log"),
		}
		// Record Olympus's address in the home too, so that the home alone
		// is enough to start the replica by hand.
		if err := writeReplicaFile(p.home, id, cfg.Committee.ChainID, LocalListen, l.Addr); err != nil {
			return fail(err)
		}
		l.procs = append(l.procs, p)
	}
	if err := writeFaultSpecs(cfg, l.procs); err != nil {
		return fail(err)
	}
	for _, p := range l.procs {
		if err := l.start(p); err != nil {
			return fail(err)
		}
	}
	log.Infow("local committee started", "replicas", n, "olympus", l.Addr, "dir", workDir)
	go func() {
		select {
		case <-ctx.Done():
			l.shutdown()
		case <-l.done:
		}
	}()
	return l, nil
}

// WaitReady waits until every replica accepts requests (Service.Serving)
// and returns the signed roster. It fails early when a replica exits on its own before that, naming
// the replica and the last line of its log.
func (l *Local) WaitReady(ctx context.Context) (*Roster, error) {
	for {
		l.mu.Lock()
		crashes, crashed := l.crashes, l.crashed
		l.mu.Unlock()
		select {
		case <-l.Service.Serving():
			return l.Service.Roster(), nil
		default:
		}
		if len(crashes) > 0 {
			c := crashes[0]
			p := l.procs[c.id]
			return nil, fmt.Errorf("replica %d exited before the committee was ready (%v): %s (log: %s)",
				c.id, c.err, LastLogLine(p.logPath), p.logPath)
		}
		select {
		case <-l.Service.Serving():
			return l.Service.Roster(), nil
		case <-crashed:
		case <-l.done:
			return nil, errors.New("local committee stopped before it was ready")
		case <-ctx.Done():
			k, n := l.Service.Registered()
			return nil, fmt.Errorf("committee not ready: %d of %d replicas registered with olympus, and not all of them accept requests yet: %w", k, n, ctx.Err())
		}
	}
}

// Done is closed once every replica has stopped and Olympus is closed.
func (l *Local) Done() <-chan struct{} { return l.done }

// Close stops every replica (SIGTERM, then SIGKILL after the grace period)
// and Olympus, and waits for them.
func (l *Local) Close() error {
	l.shutdown()
	<-l.done
	return nil
}

// N is the number of replicas.
func (l *Local) N() int { return len(l.procs) }

// Home is the home directory of replica id.
func (l *Local) Home(id types.ReplicaID) string { return l.procs[id].home }

// LogPath is the log file of replica id.
func (l *Local) LogPath(id types.ReplicaID) string { return l.procs[id].logPath }

// Running reports whether replica id's process is running (paused counts).
func (l *Local) Running(id types.ReplicaID) bool {
	p, err := l.proc(id)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// PID is the process id of replica id, or 0 when it is not running.
func (l *Local) PID(id types.ReplicaID) int {
	p, err := l.proc(id)
	if err != nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill crashes replica id (SIGKILL) and waits for the process to end.
func (l *Local) Kill(id types.ReplicaID) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	exited, err := p.signal(syscall.SIGKILL, true)
	if err != nil {
		return err
	}
	<-exited
	return nil
}

// Stop stops replica id gracefully (SIGTERM, SIGKILL after the grace
// period) and waits for the process to end.
func (l *Local) Stop(id types.ReplicaID) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	return p.stop(l.opts.Grace)
}

// Pause suspends replica id (SIGSTOP): it keeps its connections but
// neither sends nor receives, like a replica stuck in a long GC pause.
func (l *Local) Pause(id types.ReplicaID) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	_, err = p.signal(syscall.SIGSTOP, false)
	return err
}

// Resume continues a paused replica (SIGCONT).
func (l *Local) Resume(id types.ReplicaID) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	_, err = p.signal(syscall.SIGCONT, false)
	return err
}

// Restart starts replica id again on its home, after Kill or Stop (or a
// crash). It listens on the addresses it registered with Olympus the first
// time, so the rest of the committee finds it where the roster says.
func (l *Local) Restart(id types.ReplicaID) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	if addrs := l.Service.memberAddrs(id); len(addrs) > 0 {
		h, err := LoadReplicaHome(p.home)
		if err != nil {
			return err
		}
		if err := writeReplicaFile(p.home, id, h.ChainID, addrs, h.Olympus); err != nil {
			return fmt.Errorf("replica %d: %w", id, err)
		}
	}
	return l.start(p)
}

func (l *Local) proc(id types.ReplicaID) (*replicaProc, error) {
	if int(id) >= len(l.procs) {
		return nil, fmt.Errorf("no replica %d (ids 0..%d)", id, len(l.procs)-1)
	}
	return l.procs[id], nil
}

// start launches p's process.
func (l *Local) start(p *replicaProc) error {
	l.mu.Lock()
	closing := l.closing
	l.mu.Unlock()
	if closing {
		return errors.New("local committee is stopping")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("replica %d is running; Kill or Stop it first", p.id)
	}
	logf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("replica %d log: %v", p.id, err)
	}
	args := append([]string{"--home", p.home, "--olympus", l.Addr, "--log-level", l.opts.LogLevel}, l.opts.ReplicaArgs...)
	// Each start is marked in the log, so a restarted replica's runs can be
	// told apart.
	fmt.Fprintf(logf, "# %s %s\n", l.bin, strings.Join(args, " "))
	cmd := exec.Command(l.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start replica %d: %v", p.id, unwrapExec(err))
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.requested = cmd, exited, false
	log.Infow("replica started", "id", p.id, "pid", cmd.Process.Pid, "log", p.logPath)
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		requested := p.requested
		p.cmd = nil
		p.mu.Unlock()
		close(exited)
		if requested {
			log.Infow("replica stopped", "id", p.id, "status", exitStatus(err))
		} else if fault.IsCrashExit(err) {
			// Stopped by its own crash fault, maybe before it reported
			// Ready (a crash in round 1): not a failed start.
			l.Service.Excuse(p.id)
			l.afterCrash(p, err)
		} else {
			log.Warnw("replica exited", "id", p.id, "status", exitStatus(err), "log", p.logPath)
			l.mu.Lock()
			l.crashes = append(l.crashes, exitEvent{p.id, errors.New(exitStatus(err))})
			close(l.crashed)
			l.crashed = make(chan struct{})
			l.mu.Unlock()
		}
		if l.opts.OnExit != nil {
			l.opts.OnExit(p.id, err, requested)
		}
	}()
	return nil
}

// shutdown stops every replica in parallel and then Olympus, once.
func (l *Local) shutdown() {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		l.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range l.procs {
			wg.Go(func() { _ = p.stop(l.opts.Grace) })
		}
		wg.Wait()
		if err := l.Service.Close(); err != nil {
			log.Warnw("closing olympus", "err", err)
		}
		log.Infow("local committee stopped")
		close(l.done)
	})
}

// replicaProc is one replica's process slot; cmd is nil while it is down.
type replicaProc struct {
	id      types.ReplicaID
	home    string
	logPath string

	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{} // closed when cmd has been waited for
	requested bool          // the current process was told to end by us
}

// signal sends sig to the running process; ending marks the exit as
// requested. It returns the channel closed when the process has ended.
func (p *replicaProc) signal(sig syscall.Signal, ending bool) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil, fmt.Errorf("replica %d is not running", p.id)
	}
	if ending {
		p.requested = true
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return nil, fmt.Errorf("replica %d: %s: %v", p.id, sig, err)
	}
	return p.exited, nil
}

// stop sends SIGTERM (and SIGCONT, in case it is paused), waits up to grace,
// then SIGKILLs. A replica that is not running is not an error.
func (p *replicaProc) stop(grace time.Duration) error {
	exited, err := p.signal(syscall.SIGTERM, true)
	if err != nil {
		p.mu.Lock()
		down := p.cmd == nil
		p.mu.Unlock()
		if down {
			return nil
		}
		return err
	}
	_, _ = p.signal(syscall.SIGCONT, true)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return nil
	case <-t.C:
	}
	log.Warnw("replica ignored SIGTERM; killing it", "id", p.id, "grace", grace)
	if k, err := p.signal(syscall.SIGKILL, true); err == nil {
		<-k
	}
	return nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return unwrapPath(err)
}

// LastLogLine returns the last non-empty line of a process log (shortened),
// leaving out the "# command" lines the launchers write at each start, to
// say why a process died without making the user open the file. Olympus's
// local mode and the diembft launcher both use it.
func LastLogLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "no log"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 64<<10 {
		_, _ = f.Seek(st.Size()-64<<10, io.SeekStart)
	}
	last := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "# ") {
			last = s
		}
	}
	if last == "" {
		return "empty log " + path
	}
	if len(last) > 300 {
		last = last[:300] + "…"
	}
	return last
}
