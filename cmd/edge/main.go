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
	root.AddCommand(runCmd(stdout, stderr), validateCmd(stdout, stderr), versionCmd(stdout))
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
	var (
		path      string
		drainTime time.Duration
		logLevel  string
		logFormat string
	)
	cmd := &cobra.Command{
		Use:   "run [-c FILE]",
		Short: "serve a config (the embedded default when -c is not given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(stderr, logLevel, logFormat)
			if err != nil {
				fmt.Fprintln(stderr, "edge:", err)
				return err
			}
			cfg, err := loadConfig(path)
			if err == nil {
				var srv *edge.Server
				srv, err = edge.New(edge.Options{Config: cfg, Logger: logger, Version: buildVersion(), DrainTime: drainTime})
				if err == nil {
					return serve(cmd.Context(), srv, path == "", stdout, stderr, logger)
				}
			}
			fmt.Fprintln(stderr, "edge: invalid config:")
			fmt.Fprintln(stderr, indent(err.Error()))
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (YAML); default: the embedded demo config")
	cmd.Flags().DurationVar(&drainTime, "drain-time", 600*time.Second, "how long in-flight requests may take to finish on shutdown")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

func serve(ctx context.Context, srv *edge.Server, demo bool, stdout, stderr io.Writer, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				if sig == syscall.SIGUSR1 {
					srv.ReopenLogs()
				} else {
					logger.Warn("SIGHUP ignored: this build cannot hot restart yet")
				}
			}
		}
	}()
	if demo {
		go func() {
			select {
			case <-srv.Ready():
				fmt.Fprintf(stdout, "edge %s is serving its embedded default config.\n", buildVersion())
				fmt.Fprint(stdout, demoHelp)
			case <-ctx.Done():
			}
		}()
	}
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "edge:", err)
		return err
	}
	return nil
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

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
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
