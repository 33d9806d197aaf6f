// Package billingsim is a billing receiver for demos and tests: it implements the billing API
// contract of pkg/billing (signed POSTs, idempotency keys, upsert by x_RecordId keeping the
// newest x_Revision), can fail on demand, and reports what it holds.
package billingsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/atomicfile"
	"github.com/ionusage/connector/pkg/billing"
)

// Options configures New.
type Options struct {
	Secret []byte
	// FailRate is the fraction of POSTs answered 500, chosen deterministically from the
	// request's ordinal and Seed. Half of the failures happen after the delivery was stored
	// (a lost response), which is what makes idempotency keys necessary.
	FailRate float64
	Seed     uint64
	Skew     time.Duration // accepted clock skew of X-Signature-Timestamp (default 5m)
	Logger   *slog.Logger
	Now      func() time.Time
	// StateFile, when set, keeps what the receiver holds across restarts (loaded by New, written
	// atomically after every stored delivery), like a real billing platform's database.
	StateFile string
}

// persisted is the StateFile content.
type persisted struct {
	Keys  map[string]string `json:"keys"`
	Seen  map[string]string `json:"seen"`
	State State             `json:"state"`
}

// Held is one record as the receiver holds it.
type Held struct {
	Revision    string          `json:"revision"`
	RevisionSeq int64           `json:"revision_seq"`
	Customer    string          `json:"customer"`
	Currency    string          `json:"currency"`
	BilledCost  decimal.Decimal `json:"billed_cost"`
	FetchedAt   time.Time       `json:"fetched_at"`
}

// State is GET /state.
type State struct {
	Records map[string]Held                       `json:"records"` // by x_RecordId
	Totals  map[string]map[string]decimal.Decimal `json:"totals"`  // customer → currency → BilledCost of held records
	// Deliveries stored (distinct idempotency keys); Replays: same key and body again;
	// Conflicts: same key, other body (409); Failed: injected 500s; BadSignature: 401s.
	Deliveries   int `json:"deliveries"`
	Replays      int `json:"replays"`
	Conflicts    int `json:"conflicts"`
	Failed       int `json:"failed"`
	BadSignature int `json:"bad_signature"`
	// DuplicateRecords counts record revisions received in a second, different delivery:
	// double billing. Stale counts revisions older than the one held (ignored).
	DuplicateRecords int `json:"duplicate_records"`
	Stale            int `json:"stale"`
	Superseded       int `json:"superseded"`
}

type incoming struct {
	DeliveryID string `json:"delivery_id"`
	Records    []struct {
		RecordID    string          `json:"x_RecordId"`
		Revision    string          `json:"x_Revision"`
		RevisionSeq int64           `json:"x_RevisionSeq"`
		FetchedAt   time.Time       `json:"x_FetchedAt"`
		Customer    string          `json:"x_IonCustomerId"`
		Currency    string          `json:"BillingCurrency"`
		BilledCost  decimal.Decimal `json:"BilledCost"`
	} `json:"records"`
}

// Server is the receiver.
type Server struct {
	o    Options
	mu   sync.Mutex
	n    uint64            // POST ordinal, for deterministic failures
	keys map[string]string // idempotency key → body hash
	seen map[string]string // record id/revision → delivery id that carried it
	st   State
	srv  *http.Server
	ln   net.Listener
}

// New checks the options.
func New(o Options) (*Server, error) {
	if len(o.Secret) == 0 {
		return nil, errors.New("billingsim: secret is required")
	}
	if o.FailRate < 0 || o.FailRate >= 1 {
		return nil, fmt.Errorf("billingsim: fail rate %v, want 0 <= r < 1", o.FailRate)
	}
	if o.Skew == 0 {
		o.Skew = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, keys: map[string]string{}, seen: map[string]string{}}
	s.st.Records = map[string]Held{}
	if o.StateFile != "" {
		b, err := os.ReadFile(o.StateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("billingsim: state file: %w", err)
		default:
			var p persisted
			if err := json.Unmarshal(b, &p); err != nil {
				return nil, fmt.Errorf("billingsim: state file %s: %w", o.StateFile, err)
			}
			s.keys, s.seen, s.st = p.Keys, p.Seen, p.State
			s.st.Totals = nil
			if s.st.Records == nil {
				s.st.Records = map[string]Held{}
			}
		}
	}
	return s, nil
}

// save writes the state file; called with s.mu held, before the delivery is acknowledged.
func (s *Server) save() error {
	if s.o.StateFile == "" {
		return nil
	}
	return atomicfile.Write(s.o.StateFile, func(w io.Writer) error {
		return json.NewEncoder(w).Encode(persisted{Keys: s.keys, Seen: s.seen, State: s.st})
	})
}

// Handler serves POST /deliveries and GET /state.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /deliveries", s.post)
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.State()) })
	return mux
}

// Start listens on addr ("127.0.0.1:0" for a free port) and returns the base URL.
func (s *Server) Start(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("billingsim: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Close stops the server.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// State returns a deep copy of what the receiver holds, with totals.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Records = make(map[string]Held, len(s.st.Records))
	st.Totals = map[string]map[string]decimal.Decimal{}
	for id, h := range s.st.Records {
		st.Records[id] = h
		if st.Totals[h.Customer] == nil {
			st.Totals[h.Customer] = map[string]decimal.Decimal{}
		}
		st.Totals[h.Customer][h.Currency] = st.Totals[h.Customer][h.Currency].Add(h.BilledCost)
	}
	return st
}

// fail decides deterministically whether POST number n fails, and whether after storing.
func (s *Server) fail(n uint64) (fail, afterStore bool) {
	if s.o.FailRate == 0 {
		return false, false
	}
	// splitmix64 of (seed, n): well mixed, so consecutive requests fail independently.
	v := s.o.Seed*0x9e3779b97f4a7c15 + n
	v ^= v >> 30
	v *= 0xbf58476d1ce4e5b9
	v ^= v >> 27
	v *= 0x94d049bb133111eb
	v ^= v >> 31
	return float64(v>>11)/float64(1<<53) < s.o.FailRate, v&1 == 1
}

func (s *Server) post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		writeJSON(w, 400, map[string]string{"error": "read body"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	fail, after := s.fail(s.n)
	if err := billing.Verify(s.o.Secret, r.Header.Get(billing.HeaderTimestamp), r.Header.Get(billing.HeaderSignature), body, s.o.Now(), s.o.Skew); err != nil {
		s.st.BadSignature++
		writeJSON(w, 401, map[string]string{"error": err.Error()})
		return
	}
	var in incoming
	if err := json.Unmarshal(body, &in); err != nil {
		writeJSON(w, 400, map[string]string{"error": "body is not a delivery: " + err.Error()})
		return
	}
	key := r.Header.Get(billing.HeaderIdempotencyKey)
	if key == "" || key != in.DeliveryID {
		writeJSON(w, 400, map[string]string{"error": "Idempotency-Key must equal delivery_id"})
		return
	}
	if fail && !after {
		s.st.Failed++
		writeJSON(w, 500, map[string]string{"error": "injected failure"})
		return
	}
	hash := billing.BodyHash(body)
	if stored, ok := s.keys[key]; ok {
		if stored != hash {
			s.st.Conflicts++
			writeJSON(w, 409, map[string]string{"error": "idempotency key reused with another body", "body_sha256": stored})
			return
		}
		s.st.Replays++
		writeJSON(w, 200, map[string]any{"delivery_id": key, "replay": true, "body_sha256": hash})
		return
	}
	s.keys[key] = hash
	s.st.Deliveries++
	for _, rec := range in.Records {
		rk := rec.RecordID + "/" + rec.Revision
		if prev, ok := s.seen[rk]; ok && prev != key {
			s.st.DuplicateRecords++
		}
		s.seen[rk] = key
		h, ok := s.st.Records[rec.RecordID]
		switch {
		case ok && h.Revision == rec.Revision:
		case ok && (rec.RevisionSeq < h.RevisionSeq || rec.FetchedAt.Before(h.FetchedAt)):
			s.st.Stale++
		default:
			if ok {
				s.st.Superseded++
			}
			s.st.Records[rec.RecordID] = Held{Revision: rec.Revision, RevisionSeq: rec.RevisionSeq, Customer: rec.Customer,
				Currency: rec.Currency, BilledCost: rec.BilledCost, FetchedAt: rec.FetchedAt}
		}
	}
	if err := s.save(); err != nil {
		s.o.Logger.Error("billingsim: save state", "err", err)
		writeJSON(w, 500, map[string]string{"error": "could not persist the delivery"})
		return
	}
	if fail {
		s.st.Failed++
		writeJSON(w, 500, map[string]string{"error": "injected failure after storing"})
		return
	}
	writeJSON(w, 200, map[string]any{"delivery_id": key, "replay": false, "body_sha256": hash})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// FetchState reads GET /state from a running receiver.
func FetchState(ctx context.Context, baseURL string) (State, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/state", nil)
	if err != nil {
		return State{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return State{}, err
	}
	defer resp.Body.Close()
	var st State
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("billingsim: GET /state: HTTP %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
