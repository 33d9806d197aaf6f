// Package obs is the operational surface every service shares: a redacting slog logger and
// an HTTP server for health, readiness and Prometheus metrics.
package obs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces the value of every sensitive attribute.
const Redacted = "[redacted]"

// NewLogger returns a logger writing to w at level (debug, info, warn, error; "" is info) in
// format (json, text; "" is json), behind NewRedactingHandler.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch format {
	case "", "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("obs: log format %q is not json or text", format)
	}
	return slog.New(NewRedactingHandler(h)), nil
}

// ParseLevel maps the configuration's level names to slog levels.
func ParseLevel(level string) (slog.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("obs: log level %q is not debug, info, warn or error", level)
}

// sensitiveKey matches attribute keys whose values are never logged, whatever their type.
// It errs on the side of hiding: a key like "token_expiry" loses its value too.
var sensitiveKey = regexp.MustCompile(`(?i)(secret|token|password|authorization|api_?key|credential)`)

// userinfo matches the credentials of URLs anywhere in a string (nats://user:pass@host, or
// such a URL quoted inside an error message); no parse is needed, so malformed URLs are
// covered too.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s"']*@`)

// StripUserinfo removes the credentials of every URL in s.
func StripUserinfo(s string) string {
	if !strings.Contains(s, "@") {
		return s // the common case, without a regexp
	}
	return userinfo.ReplaceAllString(s, "$1")
}

// NewRedactingHandler wraps next so that sensitive attributes (by key, at any depth, including
// those added through With) are replaced by Redacted, and URL credentials are removed from
// string and error values and from the message. It is a safety net: code should not log
// secrets in the first place, and config.Secret already prints as Redacted.
func NewRedactingHandler(next slog.Handler) slog.Handler {
	return redactingHandler{next: next}
}

type redactingHandler struct {
	next slog.Handler
}

func (h redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, StripUserinfo(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return redactingHandler{next: h.next.WithAttrs(redactAttrs(attrs))}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{next: h.next.WithGroup(name)}
}

func redactAttrs(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redactAttr(a)
	}
	return out
}

func redactAttr(a slog.Attr) slog.Attr {
	if sensitiveKey.MatchString(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	// Resolve LogValuers first: what they return is what gets written.
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		v = slog.StringValue(StripUserinfo(v.String()))
	case slog.KindGroup:
		v = slog.GroupValue(redactAttrs(v.Group())...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			// Errors from net/http and nats.go quote the URL they failed on.
			if s := x.Error(); StripUserinfo(s) != s {
				v = slog.StringValue(StripUserinfo(s))
			}
		case *url.URL:
			if x != nil && x.User != nil {
				u := *x
				u.User = nil
				v = slog.StringValue(u.String())
			}
		case url.URL:
			if x.User != nil {
				x.User = nil
				v = slog.StringValue(x.String())
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
