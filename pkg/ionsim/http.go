package ionsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

type routeKind int

const (
	routeOAuth routeKind = iota
	routeAPI
	routeReportData // eligible for TruncateJSON
)

func (s *Sim) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, kind routeKind, h http.HandlerFunc) {
		mux.HandleFunc(pattern, s.wrap(pattern, kind, h))
	}
	const v3 = "/api/v3/accounts/{account}"
	handle("POST /oauth/token", routeOAuth, s.handleToken)
	handle("POST /oauth/validateAccess", routeOAuth, s.handleValidate)
	handle("GET "+v3+"/customers", routeAPI, s.bearer(s.handleCustomers))
	handle("GET "+v3+"/customers/{customer}", routeAPI, s.bearer(s.handleCustomer))
	handle("GET "+v3+"/customers/{customer}/cloudProfiles", routeAPI, s.bearer(s.handleCloudProfiles))
	handle("GET "+v3+"/subscriptions", routeAPI, s.bearer(s.handleSubscriptions))
	handle("GET "+v3+"/reports", routeAPI, s.bearer(s.handleReports))
	handle("GET "+v3+"/reports/{report}", routeAPI, s.bearer(s.handleReport))
	handle("POST "+v3+"/reports/{report}/data", routeReportData, s.bearer(s.handleReportData))
	handle("POST "+v3+"/reports/{report}/reportDataCsv", routeReportData, s.bearer(s.handleReportCSV))
	handle("GET /api/v1/customers", routeAPI, s.basic(s.handleV1Customers))
	handle("GET /api/v1/reports/billing/{vendor}", routeAPI, s.basic(s.handleV1Billing))
	handle("/", routeAPI, func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, r, http.StatusNotFound, "NOT_FOUND", "no route for "+r.Method+" "+r.URL.Path)
	})
	return mux
}

type ctxKey int

const (
	reqIDKey ctxKey = iota
	reqNKey
)

// wrap counts the request and applies faults. Fault picks hash the seed with the request number,
// so a seeded run with the same request order sees the same faults.
func (s *Sim) wrap(pattern string, kind routeKind, h http.HandlerFunc) http.HandlerFunc {
	seed := uint64(s.opts.Seed)
	f := s.opts.Faults
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqN++
		n := s.reqN
		s.stats.Requests[pattern]++
		s.mu.Unlock()
		ctx := context.WithValue(r.Context(), reqIDKey, fmt.Sprintf("%020x", hash(seed, n, 1))[:20])
		r = r.WithContext(context.WithValue(ctx, reqNKey, n))
		if f.Latency > 0 {
			select {
			case <-time.After(f.Latency):
			case <-r.Context().Done():
				return
			}
		}
		if frac(hash(seed, n, 429)) < f.Rate429 || (s.opts.Variant.RateLimit429 && kind != routeOAuth && s.overLimit(r)) {
			s.count(func(st *Stats) { st.Served429++ })
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			s.fail(w, r, kind, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "rate limit exceeded")
			return
		}
		if frac(hash(seed, n, 503)) < f.Rate503 {
			s.count(func(st *Stats) { st.Served503++ })
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			s.fail(w, r, kind, http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable.")
			return
		}
		if f.SlowBody > 0 {
			w = &slowWriter{ResponseWriter: w, pause: f.SlowBody, chunk: f.SlowChunk, ctx: r.Context()}
		}
		if kind == routeReportData && frac(hash(seed, n, 777)) < f.TruncateJSON {
			tw := &truncWriter{ResponseWriter: w, left: 64 + int(hash(seed, n, 778)%4096)}
			h(tw, r)
			if tw.cut {
				s.count(func(st *Stats) { st.Truncated++ })
				if f.TruncateAbort {
					panic(http.ErrAbortHandler)
				}
			}
			return
		}
		h(w, r)
	}
}

func (s *Sim) fail(w http.ResponseWriter, r *http.Request, kind routeKind, code int, status, msg string) {
	if kind == routeOAuth {
		writeJSON(w, code, oauthError{msg})
		return
	}
	writeEnvelope(w, r, code, status, msg)
}

// overLimit applies Variant.RateLimit429: at most RateLimitRPS requests per account in any
// one-second window of the sim clock.
func (s *Sim) overLimit(r *http.Request) bool {
	key := r.PathValue("account")
	if key == "" {
		key = "v1"
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	recent := s.rl[key][:0]
	for _, t := range s.rl[key] {
		if now.Sub(t) < time.Second {
			recent = append(recent, t)
		}
	}
	if len(recent) >= s.opts.Variant.RateLimitRPS {
		s.rl[key] = recent
		return true
	}
	s.rl[key] = append(recent, now)
	return false
}

const requestInfoType = "type.googleapis.com/google.rpc.RequestInfo"

// envelope is the v3 error body (ion-api.md §6).
type envelope struct {
	Error   string   `json:"error"`
	Message string   `json:"message"`
	Code    int      `json:"code"`
	Details []detail `json:"details"`
}

type detail struct {
	Type      string `json:"@type"`
	RequestID string `json:"requestId"`
}

func writeEnvelope(w http.ResponseWriter, r *http.Request, code int, status, msg string) {
	id, _ := r.Context().Value(reqIDKey).(string)
	writeJSON(w, code, envelope{Error: status, Message: msg, Code: code, Details: []detail{{Type: requestInfoType, RequestID: id}}})
}

// writeJSON writes v without HTML escaping ("&" stays "&", as protobuf-JSON writes it).
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// slowWriter dribbles the body out in small chunks.
type slowWriter struct {
	http.ResponseWriter
	pause time.Duration
	chunk int
	ctx   context.Context
}

func (sw *slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(sw.chunk, len(p))
		m, err := sw.ResponseWriter.Write(p[:c])
		n += m
		if err != nil {
			return n, err
		}
		if f, ok := sw.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[c:]
		select {
		case <-time.After(sw.pause):
		case <-sw.ctx.Done():
			return n, sw.ctx.Err()
		}
	}
	return n, nil
}

func (sw *slowWriter) Flush() {
	if f, ok := sw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// truncWriter passes the first left bytes and silently drops the rest.
type truncWriter struct {
	http.ResponseWriter
	left int
	cut  bool
}

func (tw *truncWriter) WriteHeader(code int) {
	tw.Header().Del("Content-Length")
	tw.ResponseWriter.WriteHeader(code)
}

func (tw *truncWriter) Write(p []byte) (int, error) {
	if len(p) > tw.left {
		if tw.left > 0 {
			_, err := tw.ResponseWriter.Write(p[:tw.left])
			if err != nil {
				return 0, err
			}
		}
		tw.left = 0
		tw.cut = true
		return len(p), nil
	}
	tw.left -= len(p)
	return tw.ResponseWriter.Write(p)
}

func (tw *truncWriter) Flush() {
	if f, ok := tw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
