// Command edge is a hot-restartable edge and front proxy.
//
// This file holds flag parsing, logging setup, signal handling and exit
// codes only; everything else lives in package edge.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgeproxy/edge/configs"
	"github.com/edgeproxy/edge/edge"
	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/stats"
	"github.com/edgeproxy/edge/hotrestart"
	"github.com/edgeproxy/edge/hotrestart/shmstats"
	edgetls "github.com/edgeproxy/edge/tls"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = s.Value[:12]
			}
		}
		if v != "" && v != "(devel)" {
			return v
		}
	}
	return "dev"
}

func main() {
	if err := newRoot(os.Stdout, os.Stderr).Execute(); err != nil {
		os.Exit(1)
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "edge",
		Short:         "edge is a hot-restartable edge and front proxy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(runCmd(stdout, stderr), restartCmd(stdout, stderr), validateCmd(stdout, stderr), versionCmd(stdout))
	return root
}

// loadConfig reads the file named by -c, or the embedded default.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		dir, _ := os.Getwd()
		return config.Parse(configs.Default, "(embedded default)", dir)
	}
	return config.Load(path)
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [-c FILE]",
		Short: "serve a config (the embedded default when -c is not given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), f, stdout, stderr)
		},
	}
	cmd.Flags().StringVarP(&f.path, "config", "c", "", "config file (YAML); default: the embedded demo config")
	cmd.Flags().IntVar(&f.baseID, "base-id", 0, "tells apart edges on one machine: names the hot restart control socket and shared stats")
	cmd.Flags().DurationVar(&f.drainTime, "drain-time", edge.DefaultDrainTime, "how long a draining edge lets connections finish before closing idle and WebSocket ones")
	cmd.Flags().DurationVar(&f.shutdownTime, "parent-shutdown-time", edge.DefaultShutdownTime, "when a draining edge closes whatever remains and exits")
	cmd.Flags().StringVar(&f.pidFile, "pid-file", "", "write the PID of the serving process here (for systemd's PIDFile=)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

type runFlags struct {
	path                    string
	baseID                  int
	drainTime, shutdownTime time.Duration
	pidFile                 string
	logLevel, logFormat     string
}

// check reports a flag value edge cannot run with, and the fix.
func (f runFlags) check() error {
	switch {
	case f.baseID < 0 || f.baseID > maxBaseID:
		return fmt.Errorf("--base-id %d: use a number from 0 to %d", f.baseID, maxBaseID)
	case f.drainTime <= 0:
		return fmt.Errorf("--drain-time %s: use a positive duration such as 600s", f.drainTime)
	case f.shutdownTime < f.drainTime:
		return fmt.Errorf("--parent-shutdown-time (%s) must not be shorter than --drain-time (%s)", f.shutdownTime, f.drainTime)
	}
	return nil
}

// maxBaseID bounds --base-id (it names files and sockets).
const maxBaseID = 1<<31 - 1

// run serves one generation: it takes over from the previous one when
// there is one, serves until told to stop or until the next generation
// takes over, then drains.
func run(ctx context.Context, f runFlags, stdout, stderr io.Writer) error {
	level := new(slog.LevelVar)
	logger, err := newLogger(stderr, f.logLevel, f.logFormat, level)
	if err != nil {
		fmt.Fprintln(stderr, "edge:", err)
		return err
	}
	if err := f.check(); err != nil {
		fmt.Fprintln(stderr, "edge:", err)
		return err
	}
	proc, err := hotrestart.Start(hotrestart.Options{BaseID: f.baseID, Logger: logger, PIDFile: f.pidFile, Binary: buildVersion()})
	if err != nil {
		fmt.Fprintln(stderr, "edge:", err)
		return err
	}
	g := &generation{f: f, proc: proc, logger: logger, stderr: stderr}
	srv, region, what, err := g.build(level)
	if err != nil {
		return g.fail(what, err)
	}
	defer region.Close()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(runCtx) }()
	select {
	case <-srv.Ready():
	case err := <-runErr:
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		return g.fail("starting", err)
	case <-ctx.Done():
		cancelRun()
		<-runErr
		proc.Stop()
		return nil
	}
	if err := proc.Ready(srv.Adopt); err != nil {
		cancelRun()
		<-runErr
		return g.fail("hot restart", err)
	}
	if f.path == "" && proc.Epoch() == 0 {
		fmt.Fprintf(stdout, "edge %s is serving its embedded default config.\n", buildVersion())
		fmt.Fprint(stdout, demoHelp)
	}

	end, err := g.serve(ctx, srv, runErr)
	if end == replacedByChild {
		g.drainForChild(ctx, srv)
	}
	if end != runEnded {
		cancelRun()
		err = <-runErr
	}
	proc.Stop()
	if end != replacedByChild {
		// The last generation: nothing carries the stats on.
		shmstats.Remove(f.baseID)
	}
	if err != nil {
		fmt.Fprintln(stderr, "edge:", err)
	}
	return err
}

// generation is one `edge run` process in a line of hot restarts.
type generation struct {
	f      runFlags
	proc   *hotrestart.Process
	logger *slog.Logger
	stderr io.Writer
}

// fail reports why this process cannot serve, to the parent (which keeps
// serving) and on stderr.
func (g *generation) fail(what string, err error) error {
	g.proc.Fail(err)
	g.proc.Stop()
	fmt.Fprintf(g.stderr, "edge: %s:\n%s\n", what, indent(err.Error()))
	return err
}

// build loads the config and compiles the server on the shared stats
// region, with what the parent handed over: ticket keys and QUIC keys. On
// failure it says what failed.
func (g *generation) build(level *slog.LevelVar) (*edge.Server, *shmstats.Region, string, error) {
	f, proc := g.f, g.proc
	cfg, err := loadConfig(f.path)
	if err != nil {
		return nil, nil, "invalid config", err
	}
	if proc.Epoch() == 0 {
		// A fresh start: counters begin at zero.
		if err := shmstats.Remove(f.baseID); err != nil {
			return nil, nil, "shared stats", err
		}
	}
	region, err := shmstats.Open(f.baseID, stats.DefaultSlots)
	if err != nil {
		return nil, nil, "shared stats", err
	}
	store := stats.NewStoreWith(region.Slot)
	store.SumGaugesWith(region.GaugeSum)
	keys, err := edgetls.NewTicketKeys(0, 0)
	if err == nil && proc.TicketKeys() != nil {
		err = keys.Import(proc.TicketKeys())
	}
	if err != nil {
		region.Close()
		return nil, nil, "TLS session ticket keys", err
	}
	proc.SetTicketKeys(keys.Export)
	resetKey, tokenKey := proc.QUICKeys()
	srv, err := edge.New(edge.Options{
		Config: cfg, Logger: g.logger, LogLevel: level, Version: buildVersion(), Stats: store,
		Listen: proc.Listen, ListenPacket: proc.ListenPacket, TicketKeys: keys, Epoch: proc.Epoch(),
		DrainTime: f.drainTime, ShutdownTime: f.shutdownTime, OCSPStaples: proc.Staples(),
		QUIC: edge.QUICOptions{
			ConnectionIDGenerator: proc.QUICConnectionIDGenerator(),
			StatelessResetKey:     resetKey, TokenGeneratorKey: tokenKey,
		},
	})
	if err != nil {
		region.Close()
		return nil, nil, "invalid config", err
	}
	proc.SetStaples(srv.OCSPStaples)
	return srv, region, "", nil
}

// ending is why a generation stops serving.
type ending int

const (
	stopped         ending = iota // SIGTERM or SIGINT
	replacedByChild               // a hot restart's child took over
	runEnded                      // Run returned: /quitquitquit, or a listener failed
)

// serve handles signals and admin drains until this process must stop,
// and says why; when Run has returned, its result comes along.
func (g *generation) serve(ctx context.Context, srv *edge.Server, runErr <-chan error) (ending, error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(sigs)
	manualDrain := srv.Draining()
	for {
		select {
		case <-manualDrain:
			// /drain_listeners or /quitquitquit. tableflip keeps a copy of
			// every listening socket for a next generation; with no next
			// generation coming, close them too, so that new connections
			// are refused rather than left in the accept queue.
			manualDrain = nil
			g.logger.Info("draining without a next generation: listening sockets closed for good, hot restart off")
			g.proc.Stop()
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				srv.ReopenLogs()
				continue
			}
			go func() {
				if res, err := g.proc.Restart(); err != nil {
					g.logger.Error("SIGHUP: hot restart failed", "err", err)
				} else {
					g.logger.Info("SIGHUP: hot restart done", "pid", res.PID, "epoch", res.Epoch)
				}
			}()
		case <-g.proc.Exit():
			return replacedByChild, nil
		case <-ctx.Done():
			return stopped, nil
		case err := <-runErr:
			return runEnded, err
		}
	}
}

// drainForChild drains after a child took over: the child answers the
// control socket and the admin port now and gets the idle connections and
// the QUIC packets; this process ends when its connections have, when a
// newer generation needs it gone, or on a signal.
func (g *generation) drainForChild(ctx context.Context, srv *edge.Server) {
	g.proc.StopControl()
	g.proc.HandOffPackets()
	srv.StopAdmin()
	srv.Drain(g.proc.Handoff)
	select {
	case <-srv.Drained():
		g.logger.Info("drained; exiting", "epoch", g.proc.Epoch())
		return
	case <-g.proc.Terminate():
		g.logger.Warn("ending before the drain is over: a newer generation is starting", "epoch", g.proc.Epoch())
	case <-ctx.Done():
		g.logger.Warn("stopped by a signal while draining; ending now", "epoch", g.proc.Epoch())
	}
	srv.EndNow()
	<-srv.Drained()
}

func restartCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		baseID  int
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restart [--base-id N]",
		Short: "hot restart the running edge from the binary and config on disk; exits 0 once the new process is ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := hotrestart.Restart(baseID, timeout)
			if err != nil {
				fmt.Fprintf(stderr, "edge restart: the running edge keeps serving; the restart failed:\n%s\n", indent(err.Error()))
				return err
			}
			fmt.Fprintf(stdout, "edge restarted: pid %d, epoch %d\n", res.PID, res.Epoch)
			return nil
		},
	}
	cmd.Flags().IntVar(&baseID, "base-id", 0, "the --base-id the running edge was started with")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for the new process")
	return cmd
}

const demoHelp = `Try:
  curl -i http://127.0.0.1:8080/ping                          # a direct response
  curl -i http://127.0.0.1:8080/old                           # a redirect
  curl -i http://127.0.0.1:8080/admin/clusters                # proxied to the admin API
  curl -i -H 'x-demo: 1' http://127.0.0.1:8080/               # a header match
  curl -i --http2-prior-knowledge http://127.0.0.1:8080/ping  # cleartext HTTP/2
  curl -s http://127.0.0.1:9901/stats/prometheus | grep edge_http
Stop with Ctrl-C. Write your own config (docs/config.md) and run: edge run -c FILE
`

func validateCmd(stdout, stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "check a config, reporting every error with its line and column",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				err := errors.New("name the config to check with -c FILE")
				fmt.Fprintln(stderr, "edge:", err)
				return err
			}
			cfg, err := config.Load(path)
			if err == nil {
				err = edge.Validate(cfg)
			}
			if err != nil {
				fmt.Fprintf(stderr, "%s: invalid:\n%s\n", path, indent(err.Error()))
				return err
			}
			fmt.Fprintf(stdout, "%s: ok (%d listeners, %d route configs, %d clusters)\n",
				path, len(cfg.Listeners), len(cfg.RouteConfigs), len(cfg.Clusters))
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (YAML)")
	return cmd
}

func versionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(stdout, "edge %s\n", buildVersion())
		},
	}
}

// newLogger builds the process logger; its level is lv's, set from level
// and changeable at run time (admin /logging).
func newLogger(w io.Writer, level, format string, lv *slog.LevelVar) (*slog.Logger, error) {
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
