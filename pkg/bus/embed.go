package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Defaults of EmbeddedOptions.
const (
	DefaultDataDir    = "./ionconnector-data"
	DefaultListen     = "127.0.0.1:4222"
	DefaultServerName = "ionconnector"
	// ListenOff disables the TCP listener; only in-process connections work.
	ListenOff = "off"

	lockFileName = "ionconnector.lock"
	startTimeout = 30 * time.Second
)

// ErrDataDirLocked means another process (or another Embedded in this one) holds the data dir.
var ErrDataDirLocked = errors.New("data dir is locked")

// ErrListenInUse means the listen address is taken.
var ErrListenInUse = errors.New("listen address in use")

// EmbeddedOptions configures the in-process NATS JetStream server (DESIGN.md "Broker").
type EmbeddedOptions struct {
	DataDir    string       // JetStream file store and lock file; created if missing. Default DefaultDataDir.
	Listen     string       // host:port of the client listener, port 0 = random; ListenOff = none. Default DefaultListen.
	ServerName string       // default DefaultServerName
	Logger     *slog.Logger // server logs, at notice level and up; default slog.Default()
	MaxPayload int32        // bytes; 0 = server default (1 MiB)
}

func (o *EmbeddedOptions) setDefaults() {
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.ServerName == "" {
		o.ServerName = DefaultServerName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports options that can never start a server.
func (o EmbeddedOptions) Validate() error {
	var errs []error
	if o.MaxPayload < 0 {
		errs = append(errs, fmt.Errorf("embedded: max payload %d is negative", o.MaxPayload))
	}
	if o.Listen != "" && o.Listen != ListenOff {
		if _, _, err := splitListen(o.Listen); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Embedded is a running in-process NATS server with JetStream and its data-dir lock.
type Embedded struct {
	srv       *server.Server
	lock      *os.File
	dataDir   string
	clientURL string
	log       *slog.Logger
}

// StartEmbedded locks opts.DataDir, starts nats-server in process with JetStream on a file store
// there, and returns once it accepts connections. Only ionconnector embeds a server; standalone
// services use Connect.
func StartEmbedded(ctx context.Context, opts EmbeddedOptions) (*Embedded, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("embedded: data dir %q: %w", opts.DataDir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded: create data dir %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	e, err := start(ctx, opts, dir)
	if err != nil {
		_ = unlock(lock)
		return nil, err
	}
	e.lock = lock
	if e.clientURL != "" {
		writeHolder(lock, e.clientURL)
	}
	return e, nil
}

func start(ctx context.Context, opts EmbeddedOptions, dir string) (*Embedded, error) {
	sopts := &server.Options{
		ServerName: opts.ServerName,
		JetStream:  true,
		StoreDir:   dir,
		// Without NoSigs the server exits the process on SIGTERM before our router drains.
		NoSigs:     true,
		MaxPayload: opts.MaxPayload,
	}
	if opts.Listen == ListenOff {
		sopts.DontListen = true
	} else {
		host, port, _ := splitListen(opts.Listen)
		if port != 0 {
			// The server only logs a listen failure (and would need a timeout to notice);
			// trying first gives a clear error at once.
			if err := checkListen(opts.Listen); err != nil {
				return nil, err
			}
		} else {
			port = server.RANDOM_PORT // nats-server reads 0 as its default port 4222
		}
		sopts.Host, sopts.Port = host, port
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded: configure nats-server: %w", err)
	}
	logger := newServerLogger(opts.Logger.With("component", "nats-server"))
	srv.SetLoggerV2(logger, false, false, false)
	go srv.Start()

	if err := waitReady(ctx, srv, logger); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		if msg := err.Error(); strings.Contains(msg, "listening on port") {
			// Lost a race for the port after checkListen, or the host is not ours.
			if strings.Contains(msg, "address already in use") {
				return nil, fmt.Errorf("embedded: %w: %s is already taken; choose another with --listen (or --listen off)", ErrListenInUse, opts.Listen)
			}
			return nil, fmt.Errorf("embedded: cannot listen on %s: %w; choose another with --listen", opts.Listen, err)
		}
		return nil, fmt.Errorf("embedded: start nats-server in %s: %w", dir, err)
	}
	e := &Embedded{srv: srv, dataDir: dir, log: opts.Logger}
	if !sopts.DontListen {
		e.clientURL = srv.ClientURL()
	}
	opts.Logger.Info("embedded NATS started", "data_dir", dir, "url", e.clientURL, "server_name", opts.ServerName)
	return e, nil
}

// waitReady polls the server until it accepts connections, fails fatally, or ctx ends.
func waitReady(ctx context.Context, srv *server.Server, logger *serverLogger) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		select {
		case msg := <-logger.fatal:
			return errors.New(msg)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		default:
		}
		if srv.ReadyForConnections(50 * time.Millisecond) {
			return nil
		}
	}
}

// ClientURL is the loopback URL for other processes and the nats CLI, or "" when Listen is off.
func (e *Embedded) ClientURL() string { return e.clientURL }

// DataDir is the absolute path of the store.
func (e *Embedded) DataDir() string { return e.dataDir }

// Server is the running server, for tests and status pages.
func (e *Embedded) Server() *server.Server { return e.srv }

// Connect opens an in-process connection, which works with or without a TCP listener.
func (e *Embedded) Connect(ctx context.Context, name string) (*nats.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("embedded: connect %q in process: %w", name, err)
	}
	return nc, nil
}

// Shutdown stops the server, waits for it to flush its store, and then releases the data-dir
// lock. If ctx ends first the lock stays held until the server is down.
func (e *Embedded) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		done <- unlock(e.lock)
	}()
	select {
	case err := <-done:
		e.log.Info("embedded NATS stopped", "data_dir", e.dataDir)
		return err
	case <-ctx.Done():
		return fmt.Errorf("embedded: shutdown of %s: %w", e.dataDir, ctx.Err())
	}
}

// lockDir takes an exclusive advisory lock on dir's lock file. flock locks belong to the open
// file, so they also exclude a second Embedded in the same process, and the kernel drops them
// if the process dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("embedded: open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if pid, _ := readHolder(dir); pid != "" {
			holder = " (pid " + pid + ")"
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("embedded: %w: another ionconnector%s holds %s; stop it or choose another data dir", ErrDataDirLocked, holder, dir)
		}
		return nil, fmt.Errorf("embedded: lock %s: %w", path, err)
	}
	writeHolder(f, "")
	return f, nil
}

// writeHolder records in the lock file the holder's pid and, when it listens, its client URL:
// hints for the error of a second process and for operator commands (HolderURL); the lock
// itself is what counts.
func writeHolder(f *os.File, url string) {
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+url+"\n"), 0)
	}
}

func readHolder(dir string) (pid, url string) {
	b, err := os.ReadFile(filepath.Join(dir, lockFileName))
	if err != nil {
		return "", ""
	}
	pid, rest, _ := strings.Cut(string(b), "\n")
	url, _, _ = strings.Cut(rest, "\n")
	return strings.TrimSpace(pid), strings.TrimSpace(url)
}

// HolderURL is the loopback client URL of the process that holds dir's lock, or "" when it
// does not listen or nobody holds it: how an operator command reaches a running ionconnector
// without being told NATS_URL.
func HolderURL(dir string) string {
	lock, err := lockDir(dir)
	if err == nil {
		_ = unlock(lock) // nobody holds it: a URL left in the file is stale
		return ""
	}
	_, url := readHolder(dir)
	return url
}

func unlock(f *os.File) error {
	if f == nil {
		return nil
	}
	_ = f.Truncate(0)
	// Closing the file releases the flock.
	if err := f.Close(); err != nil {
		return fmt.Errorf("embedded: release lock %s: %w", f.Name(), err)
	}
	return nil
}

func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("embedded: listen address %q: want host:port or %q: %w", addr, ListenOff, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("embedded: listen address %q: bad port %q", addr, p)
	}
	return host, port, nil
}

func checkListen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("embedded: %w: %s is already taken; choose another with --listen (or --listen off)", ErrListenInUse, addr)
		}
		return fmt.Errorf("embedded: cannot listen on %s: %w; choose another with --listen", addr, err)
	}
	return l.Close()
}

// serverLogger routes nats-server logs to slog. Fatal messages are also handed to waitReady,
// because the server logs a start failure instead of returning it, and must never exit us.
type serverLogger struct {
	log   *slog.Logger
	fatal chan string
}

func newServerLogger(l *slog.Logger) *serverLogger {
	return &serverLogger{log: l, fatal: make(chan string, 1)}
}

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "trace", true)
}

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	select {
	case l.fatal <- msg:
	default:
	}
}
