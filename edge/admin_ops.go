package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	edgetls "github.com/edgeproxy/edge/tls"
)

// serverState is the state /ready, /server_info and edge_server_state
// report, numbered as Envoy's server.state.
type serverState int

const (
	stateLive serverState = iota
	stateDraining
	statePreInitializing
)

func (st serverState) String() string {
	switch st {
	case stateLive:
		return "LIVE"
	case stateDraining:
		return "DRAINING"
	}
	return "PRE_INITIALIZING"
}

// state is PRE_INITIALIZING until every listener accepts, then LIVE, and
// DRAINING once a drain started or while the health check is failed by
// the admin API (traffic still flows then; only load balancers that ask
// /ready are told to go away), as Envoy.
func (s *Server) state() serverState {
	select {
	case <-s.ready:
	default:
		return statePreInitializing
	}
	if s.healthFailed.Load() {
		return stateDraining
	}
	select {
	case <-s.Draining():
		return stateDraining
	default:
	}
	return stateLive
}

// writeJSON answers v as indented JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeOK answers a state change that took effect.
func writeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "OK")
}

// serverInfo is GET /server_info.
type serverInfo struct {
	Version           string  `json:"version"`
	State             string  `json:"state"`
	Epoch             int     `json:"epoch"`
	UptimeSeconds     float64 `json:"uptime_seconds"`
	PID               int     `json:"pid"`
	ConfigFile        string  `json:"config_file"`
	HealthcheckFailed bool    `json:"healthcheck_failed"`
	DrainTime         string  `json:"drain_time"`
	ShutdownTime      string  `json:"parent_shutdown_time"`
}

func (a *adminServer) handleServerInfo(w http.ResponseWriter, r *http.Request) {
	s := a.s
	info := serverInfo{
		Version:           s.version,
		State:             s.state().String(),
		Epoch:             s.epoch,
		PID:               os.Getpid(),
		ConfigFile:        s.cfg.File,
		HealthcheckFailed: s.healthFailed.Load(),
		DrainTime:         s.drainTime.String(),
		ShutdownTime:      s.shutdownTime.String(),
	}
	if !s.started.IsZero() {
		info.UptimeSeconds = math.Round(time.Since(s.started).Seconds()*1000) / 1000
	}
	writeJSON(w, info)
}

// listenerInfo is one entry of GET /listeners.
type listenerInfo struct {
	Name      string   `json:"name"`
	Address   string   `json:"address"` // bound; the configured one before Run binds it
	Protocols []string `json:"protocols"`
	TLS       bool     `json:"tls"`
}

// handleListeners lists the listeners as name::address lines (Envoy's
// format), or as JSON with protocols and TLS with ?format=json.
func (a *adminServer) handleListeners(w http.ResponseWriter, r *http.Request) {
	var out []listenerInfo
	for _, l := range a.s.listeners {
		addr := l.cfg.Address
		if ad := a.s.Addr(l.name); ad != nil {
			addr = ad.String()
		}
		out = append(out, listenerInfo{Name: l.name, Address: addr, Protocols: l.cfg.Protocols, TLS: l.tlsConfig != nil})
	}
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, out)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range out {
		fmt.Fprintf(w, "%s::%s\n", l.Name, l.Address)
	}
}

// loadCerts describes the certificate files of every TLS listener and
// pairs each ACME manager with its listener.
func (a *adminServer) loadCerts() {
	acme := a.s.acme
	for _, l := range a.s.listeners {
		if l.cfg.TLS == nil {
			continue
		}
		infos, err := edgetls.CertificateFiles(a.s.cfg, l.cfg.TLS)
		for _, ci := range infos {
			a.certs = append(a.certs, listenerCert{listener: l.name, info: ci})
		}
		if err != nil {
			a.certErrs = append(a.certErrs, fmt.Sprintf("listener %q: %v", l.name, err))
		}
		// compile made one manager per acme section, in listener order.
		if l.cfg.TLS.ACME != nil && len(acme) > 0 {
			a.acme = append(a.acme, listenerACME{listener: l.name, m: acme[0]})
			acme = acme[1:]
		}
	}
}

// served returns every certificate the listeners serve now.
func (a *adminServer) served() []listenerCert {
	out := append([]listenerCert(nil), a.certs...)
	for _, la := range a.acme {
		for _, ci := range la.m.Certificates() {
			out = append(out, listenerCert{listener: la.listener, info: ci})
		}
	}
	return out
}

// firstExpiry is the earliest NotAfter among the served certificates.
func (a *adminServer) firstExpiry() (time.Time, bool) {
	var first time.Time
	for _, c := range a.served() {
		if first.IsZero() || c.info.NotAfter.Before(first) {
			first = c.info.NotAfter
		}
	}
	return first, !first.IsZero()
}

// certInfo is one entry of GET /certs.
type certInfo struct {
	Listener            string    `json:"listener"`
	Source              string    `json:"source"` // the certificate file, or "acme"
	Names               []string  `json:"names"`
	IPs                 []string  `json:"ip_addresses,omitempty"`
	Subject             string    `json:"subject"`
	Issuer              string    `json:"issuer"`
	Serial              string    `json:"serial_number"`
	NotBefore           time.Time `json:"not_before"`
	NotAfter            time.Time `json:"not_after"`
	DaysUntilExpiration int       `json:"days_until_expiration"`
}

func (a *adminServer) handleCerts(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	out := struct {
		Certificates []certInfo `json:"certificates"`
		Errors       []string   `json:"errors,omitempty"`
	}{Certificates: []certInfo{}, Errors: a.certErrs}
	for _, c := range a.served() {
		ci := c.info
		out.Certificates = append(out.Certificates, certInfo{
			Listener: c.listener, Source: ci.Source, Names: ci.Names, IPs: ci.IPs,
			Subject: ci.Subject, Issuer: ci.Issuer, Serial: ci.Serial,
			NotBefore: ci.NotBefore.UTC(), NotAfter: ci.NotAfter.UTC(),
			DaysUntilExpiration: int(math.Floor(ci.NotAfter.Sub(now).Hours() / 24)),
		})
	}
	writeJSON(w, out)
}

// handleLogging shows the log level.
func (a *adminServer) handleLogging(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if lv := a.s.logLevel; lv != nil {
		fmt.Fprintf(w, "level: %s\n", levelName(lv.Level()))
		return
	}
	fmt.Fprintf(w, "level: %s (fixed: this server was started without a settable level)\n", levelName(a.effectiveLevel()))
}

// effectiveLevel is the lowest level the logger's handler records.
func (a *adminServer) effectiveLevel() slog.Level {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if a.s.logger.Enabled(context.Background(), l) {
			return l
		}
	}
	return slog.LevelError + 4
}

// levelName spells a level the way POST /logging accepts it.
func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

// handleSetLogging sets the log level from ?level=.
func (a *adminServer) handleSetLogging(w http.ResponseWriter, r *http.Request) {
	lv := a.s.logLevel
	if lv == nil {
		http.Error(w, "the log level cannot be changed: this server was started without a settable level (Options.LogLevel)", http.StatusBadRequest)
		return
	}
	name := r.URL.Query().Get("level")
	if name == "" {
		http.Error(w, "missing level: POST /logging?level=L with L one of debug, info, warn or error", http.StatusBadRequest)
		return
	}
	var l slog.Level
	if strings.EqualFold(name, "warning") {
		name = "warn"
	}
	if err := l.UnmarshalText([]byte(name)); err != nil {
		http.Error(w, fmt.Sprintf("unknown level %q: use debug, info, warn or error", name), http.StatusBadRequest)
		return
	}
	// Logged before the change, so that it shows at the old level.
	a.s.logger.Info("log level changed by the admin API", "from", levelName(lv.Level()), "to", levelName(l))
	lv.Set(l)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "level: %s\n", levelName(l))
}

// handleHealthcheckFail makes /ready answer 503 DRAINING, so that load
// balancers take this edge out, while traffic that still arrives is
// served.
func (a *adminServer) handleHealthcheckFail(w http.ResponseWriter, r *http.Request) {
	if !a.s.healthFailed.Swap(true) {
		a.s.logger.Warn("health check failed by the admin API: /ready answers 503")
	}
	writeOK(w)
}

// handleHealthcheckOK undoes handleHealthcheckFail.
func (a *adminServer) handleHealthcheckOK(w http.ResponseWriter, r *http.Request) {
	if a.s.healthFailed.Swap(false) {
		a.s.logger.Info("health check restored by the admin API")
	}
	writeOK(w)
}

// handleDrainListeners starts a graceful drain of every listener (Drain);
// the admin API keeps serving and the process keeps running.
func (a *adminServer) handleDrainListeners(w http.ResponseWriter, r *http.Request) {
	a.s.Drain(nil)
	writeOK(w)
}

// handleQuit answers, then makes Run drain and return.
func (a *adminServer) handleQuit(w http.ResponseWriter, r *http.Request) {
	writeOK(w)
	http.NewResponseController(w).Flush()
	a.s.logger.Info("quit requested by the admin API")
	a.s.Quit()
}
