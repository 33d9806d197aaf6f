package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// deployment is an operator command's connection to a running deployment, with the Deps that
// followSync needs.
type deployment struct {
	conn *cmdConn
	cfg  *config.Config
	deps service.Deps
}

func (d *deployment) Close() { d.conn.Close() }

// connectDeployment connects to a running deployment: NATS_URL, or the embedded store of a
// running ionconnector through its loopback listener. A data dir that no process holds has no
// services working on it, so a request would wait forever: that is refused (exit 2).
func connectDeployment(ctx context.Context, io IO, name, cfgPath, dataDir string) (*deployment, int) {
	cfg, code := commandConfig(io, name, cfgPath, dataDir)
	if cfg == nil {
		return nil, code
	}
	c, code := commandConnect(ctx, io, name, cfg)
	if c == nil {
		return nil, code
	}
	if c.Embedded != nil {
		c.Close()
		fmt.Fprintf(io.Stderr, "%s: no deployment is running on %s: nothing would work on the request.\n"+
			"Start `ionconnector run` on it (commands reach it through its listener), set NATS_URL for a cluster, or use `sync --once`.\n",
			name, cfg.Embedded.DataDir)
		return nil, service.ExitUsage
	}
	return &deployment{conn: c, cfg: cfg, deps: service.Deps{Config: cfg, Logger: c.Logger, Conn: c.NC, JS: c.JS}}, 0
}

// modeFor is the source mode of a request for account: explicit, else the account's auth in
// the deployment's config, else v3.
func modeFor(cfg *config.Config, account, explicit string) string {
	if explicit != "" {
		return explicit
	}
	for _, a := range cfg.Accounts {
		if a.ID == account && a.Auth == config.AuthV1 {
			return events.ModeV1
		}
	}
	return events.ModeV3
}

type remoteSyncOptions struct {
	Account, Period, Mode, RequestID string
	JSON                             bool
	ConfigPath, DataDir              string
	Timeout                          time.Duration
}

// syncRemote is `sync` without --once: publish a request to the running deployment and follow
// it to its reconciliation.
func syncRemote(ctx context.Context, io IO, o remoteSyncOptions) int {
	if !accountPeriodFlags(io, "sync", o.Account, o.Period) {
		return service.ExitUsage
	}
	if o.Mode != "" && o.Mode != events.ModeV1 && o.Mode != events.ModeV3 {
		fmt.Fprintf(io.Stderr, "sync: --auth %q is not v1 or v3\n", o.Mode)
		return service.ExitUsage
	}
	started := time.Now()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	d, code := connectDeployment(ctx, io, "sync", o.ConfigPath, o.DataDir)
	if d == nil {
		return code
	}
	defer d.Close()
	reqID := o.RequestID
	if reqID == "" {
		reqID = newRequestID()
	}
	fmt.Fprintf(io.Stderr, "sync: account %s period %s: request %s\n", o.Account, o.Period, reqID)
	res, err := followSync(ctx, d.deps, followOptions{
		Account: o.Account, Period: o.Period, Mode: modeFor(d.cfg, o.Account, o.Mode), Reason: "manual",
		RequestedBy: "ionconnector sync", RequestID: reqID, Progress: newProgress(io.Stderr),
	})
	if err != nil {
		fmt.Fprintf(io.Stderr, "sync: %v\n", err)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(io.Stderr, "sync: the request stays with the deployment; follow it again with --request-id %s\n", reqID)
		}
		return service.ExitFailed
	}
	res.Summary.ElapsedMS = time.Since(started).Milliseconds()
	if o.JSON {
		line, _ := json.Marshal(res.Summary)
		fmt.Fprintln(io.Stdout, string(line))
	} else {
		printSummary(io.Stdout, res, -1)
	}
	if !res.Summary.Reconciled {
		return service.ExitFailed
	}
	return service.ExitOK
}
