package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ErrNoURL means a standalone service was started without NATS_URL.
var ErrNoURL = errors.New("NATS_URL is required when not running embedded (set it to nats://host:4222, comma-separated for a cluster)")

// reconnectWait is the pause between reconnect attempts; reconnects never stop, because a
// service that gives up on its broker is dead without exiting.
const reconnectWait = 2 * time.Second

// ConnOptions configures a connection to an external NATS deployment (DESIGN.md "Broker").
type ConnOptions struct {
	URL         string // one URL or comma-separated cluster URLs; may carry user:pass, never logged
	CredsFile   string // NATS .creds file (JWT + nkey seed)
	TLSCAFile   string // PEM roots to verify the server
	TLSCertFile string // client certificate, with TLSKeyFile
	TLSKeyFile  string
	Name        string       // connection name shown by the server
	Logger      *slog.Logger // default slog.Default()
}

// Validate reports missing or inconsistent options without touching the network.
func (o ConnOptions) Validate() error {
	var errs []error
	if strings.TrimSpace(o.URL) == "" {
		errs = append(errs, ErrNoURL)
	} else {
		for _, u := range splitURLs(o.URL) {
			if _, err := url.Parse(u); err != nil {
				// url.Parse errors quote the input; never echo a password.
				errs = append(errs, fmt.Errorf("NATS_URL: %q is not a URL", RedactURL(u)))
			}
		}
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("NATS TLS: client certificate and key must be given together"))
	}
	for _, f := range []struct{ what, path string }{
		{"credentials file", o.CredsFile}, {"TLS CA file", o.TLSCAFile},
		{"TLS certificate", o.TLSCertFile}, {"TLS key", o.TLSKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("NATS %s: %w", f.what, err))
		}
	}
	return errors.Join(errs...)
}

// Connect dials an external NATS server or cluster. It fails at once if no server answers;
// after that it reconnects forever, logging each disconnect and reconnect.
func Connect(ctx context.Context, o ConnOptions) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	urls := splitURLs(o.URL)
	redacted := RedactURL(strings.Join(urls, ","))
	log = log.With("nats_url", redacted)

	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", redactErr(err, urls))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("NATS connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("NATS async error", "subject", subj, "err", redactErr(err, urls))
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(o.TLSCAFile))
	}
	if o.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(o.TLSCertFile, o.TLSKeyFile))
	}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 && d < nats.DefaultTimeout {
			opts = append(opts, nats.Timeout(d))
		}
	}

	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redacted, redactErr(err, urls))
	}
	log.Info("NATS connected", "server", nc.ConnectedUrlRedacted())
	return nc, nil
}

// RedactURL replaces the user info (user:password or token) of every comma-separated URL with
// "redacted", so URLs can be logged and put in errors.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			// Unparseable: drop anything that looks like user info rather than risk a leak.
			if at := strings.LastIndex(p, "@"); at >= 0 {
				scheme := ""
				if k := strings.Index(p, "://"); k >= 0 && k < at {
					scheme = p[:k+3]
				}
				p = scheme + "redacted@" + p[at+1:]
			}
			parts[i] = p
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

func splitURLs(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// redactErr hides any user info of urls that err's text might contain, keeping err for errors.Is.
func redactErr(err error, urls []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, raw := range urls {
		u, perr := url.Parse(raw)
		if perr != nil || u.User == nil {
			continue
		}
		clean = strings.ReplaceAll(clean, u.User.String(), "redacted")
		// A user name is no secret, but a token (nats://token@host) is.
		secret, ok := u.User.Password()
		if !ok {
			secret = u.User.Username()
		}
		if secret != "" {
			clean = strings.ReplaceAll(clean, secret, "redacted")
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
