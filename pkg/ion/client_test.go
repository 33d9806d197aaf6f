package ion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOAuth is a minimal single-use-refresh-token server for unit tests; the sandbox (ionsim)
// covers the full API in the integration tests.
type fakeOAuth struct {
	mu        sync.Mutex
	valid     map[string]bool
	spent     map[string]bool
	access    map[string]time.Time
	ttl       time.Duration
	seq       int
	refreshes int
	reuse     int
	delay     time.Duration
}

func newFakeOAuth(seed string, ttl time.Duration) *fakeOAuth {
	return &fakeOAuth{valid: map[string]bool{seed: true}, spent: map[string]bool{}, access: map[string]time.Time{}, ttl: ttl}
}

func (f *fakeOAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		http.Error(w, "token endpoint takes no Authorization", 400)
		return
	}
	_ = r.ParseForm()
	rt := r.PostForm.Get("refresh_token")
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.PostForm.Get("grant_type") != "refresh_token" || !f.valid[rt] {
		if f.spent[rt] {
			f.reuse++
		}
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"cannot validate token: redis: nil"}`)
		return
	}
	delete(f.valid, rt)
	f.spent[rt] = true
	f.seq++
	f.refreshes++
	nrt := fmt.Sprintf("refresh-%d", f.seq)
	at := fmt.Sprintf("access-%d", f.seq)
	f.valid[nrt] = true
	f.access[at] = time.Now().Add(f.ttl)
	json.NewEncoder(w).Encode(map[string]any{"access_token": at, "expires_in": int(f.ttl / time.Second), "refresh_token": nrt, "token_type": "Bearer"})
}

// authorized checks a bearer token (expired or unknown → false).
func (f *fakeOAuth) authorized(r *http.Request) bool {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.access[tok]
	return ok && time.Now().Before(exp)
}

func (f *fakeOAuth) stats() (refreshes, reuse int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, f.reuse
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestClient(t *testing.T, base string, mod func(*Options)) *Client {
	t.Helper()
	o := Options{
		BaseURL: base, Account: "10001",
		V3:                &V3Auth{RefreshToken: "seed"},
		RequestsPerSecond: 1000, Burst: 100,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 2 * time.Second,
		Timeout: 5 * time.Second,
		Logger:  quietLogger(),
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	err := Options{BaseURL: "ftp://x", V3: &V3Auth{}, V1: &V1Auth{APIKey: "k"}, Timeout: -1}.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"BaseURL", "Account", "RefreshToken", "APISecret", "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without credentials")
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	var calls atomic.Int32
	var times []time.Time
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":"RESOURCE_EXHAUSTED","message":"slow down","code":429}`)
		case 2:
			w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		default:
			fmt.Fprint(w, `{"reports":[{"reportId":"49038","reportTemplateId":"azure_plan_billing"}]}`)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	reps, err := c.ListReports(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].ReportID != "49038" || calls.Load() != 3 {
		t.Fatalf("reports %+v calls %d", reps, calls.Load())
	}
	if d := times[1].Sub(times[0]); d < 950*time.Millisecond {
		t.Errorf("Retry-After: 1 waited only %s", d)
	}
	// HTTP-date Retry-After has second resolution: at least ~1s.
	if d := times[2].Sub(times[1]); d < 900*time.Millisecond {
		t.Errorf("Retry-After date waited only %s", d)
	}
}

func TestRetryBudget(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(429)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(o *Options) { o.MaxRetries = 3 })
	_, err := c.ListReports(context.Background(), "")
	if !errors.Is(err, ErrRateLimited) || calls.Load() != 4 {
		t.Fatalf("err %v calls %d", err, calls.Load())
	}
	// A deadline shorter than Retry-After fails fast instead of sleeping into it.
	mux2 := http.NewServeMux()
	mux2.Handle("/oauth/token", newFakeOAuth("seed", time.Hour))
	mux2.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(503)
	})
	srv2 := httptest.NewServer(mux2)
	defer srv2.Close()
	c2 := newTestClient(t, srv2.URL, func(o *Options) { o.MaxBackoff = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = c2.ListReports(ctx, "")
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close() // connection reset without a response
			return
		}
		fmt.Fprint(w, `{"reports":[]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	if _, err := c.ListReports(context.Background(), ""); err != nil || calls.Load() != 2 {
		t.Fatalf("err %v calls %d", err, calls.Load())
	}
}

func TestForbiddenNeverRefreshed(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/customers", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(403)
		fmt.Fprint(w, `{"error":"PERMISSION_DENIED","message":"permission denied to access accounts/10001","code":403,"details":[{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"abc"}]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	_, err := c.ListCustomers(context.Background(), 10)
	var ae *APIError
	if !errors.Is(err, ErrPermission) || !errors.As(err, &ae) || ae.RequestID != "abc" {
		t.Fatalf("err %v", err)
	}
	if refreshes, _ := oauth.stats(); refreshes != 1 || calls.Load() != 1 {
		t.Fatalf("refreshes %d calls %d: a 403 must be neither refreshed nor retried", refreshes, calls.Load())
	}
}

func TestUnauthorizedRefreshOnce(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	var calls atomic.Int32
	alwaysDeny := atomic.Bool{}
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n == 1 || alwaysDeny.Load() {
			w.WriteHeader(401) // e.g. revoked server-side before its expiry
			return
		}
		if !oauth.authorized(r) {
			w.WriteHeader(401)
			return
		}
		fmt.Fprint(w, `{"reports":[]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	if _, err := c.ListReports(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if refreshes, reuse := oauth.stats(); refreshes != 2 || reuse != 0 || calls.Load() != 2 {
		t.Fatalf("refreshes %d reuse %d calls %d", refreshes, reuse, calls.Load())
	}
	// A 401 that persists after the refresh is returned, after exactly one more refresh.
	alwaysDeny.Store(true)
	calls.Store(0)
	_, err := c.ListReports(context.Background(), "")
	if !errors.Is(err, ErrUnauthorized) || calls.Load() != 2 {
		t.Fatalf("err %v calls %d", err, calls.Load())
	}
	if refreshes, _ := oauth.stats(); refreshes != 3 {
		t.Fatalf("refreshes %d", refreshes)
	}
}

func TestRejectedRefreshTokenNoLeak(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", newFakeOAuth("other", time.Hour))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(o *Options) { o.V3.RefreshToken = "seed-token-secret" })
	_, err := c.ListReports(context.Background(), "")
	var oe *OAuthError
	if !errors.As(err, &oe) || !errors.Is(err, ErrUnauthorized) || IsRetryable(err) {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "seed-token-secret") {
		t.Fatalf("token in error: %v", err)
	}
}

func TestRefreshAheadAndRotation(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", 2*time.Second)
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		if !oauth.authorized(r) {
			w.WriteHeader(401)
			return
		}
		fmt.Fprint(w, `{"reports":[]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	store := &MemoryTokenStore{}
	c := newTestClient(t, srv.URL, func(o *Options) { o.V3.Store = store })
	for i := 0; i < 6; i++ {
		if _, err := c.ListReports(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	refreshes, reuse := oauth.stats()
	if reuse != 0 || refreshes < 2 || refreshes > 3 {
		t.Fatalf("refreshes %d reuse %d", refreshes, reuse)
	}
	tok, _, err := store.Load(context.Background(), "10001")
	if err != nil || tok.RefreshToken != fmt.Sprintf("refresh-%d", refreshes) || tok.SeedHash != SeedHash("seed") {
		t.Fatalf("stored %+v %v", tok, err)
	}
	info, _ := c.TokenInfo(), 0
	if info.AccessExpiry.IsZero() {
		t.Error("TokenInfo")
	}
}

// Two clients (as two processes would) share one store and hammer the API with short-lived
// tokens: the lease must ensure no refresh token is spent twice.
func TestSharedStoreNoReuse(t *testing.T) {
	t.Parallel()
	testSharedStore(t, &MemoryTokenStore{})
}

func testSharedStore(t *testing.T, store TokenStore) {
	oauth := newFakeOAuth("seed", time.Second)
	oauth.delay = 30 * time.Millisecond // widen the race window
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		if !oauth.authorized(r) {
			w.WriteHeader(401)
			return
		}
		fmt.Fprint(w, `{"reports":[]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	clients := []*Client{
		newTestClient(t, srv.URL, func(o *Options) { o.V3.Store = store; o.V3.Holder = "a" }),
		newTestClient(t, srv.URL, func(o *Options) { o.V3.Store = store; o.V3.Holder = "b" }),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(c *Client) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := c.ListReports(context.Background(), ""); err != nil {
					errs <- err
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}(clients[i%2])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	refreshes, reuse := oauth.stats()
	if reuse != 0 {
		t.Fatalf("refresh token reused %d times", reuse)
	}
	if refreshes < 3 {
		t.Fatalf("only %d refreshes in 3s with 1s tokens", refreshes)
	}
	t.Logf("%d refreshes, 0 reuse", refreshes)
}

func TestSeedFileChange(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		if !oauth.authorized(r) {
			w.WriteHeader(401)
			return
		}
		fmt.Fprint(w, `{"reports":[]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	testSeedFileChange(t, srv.URL, oauth, &MemoryTokenStore{})
}

func testSeedFileChange(t *testing.T, base string, oauth *fakeOAuth, store TokenStore) {
	ctx := context.Background()
	c1 := newTestClient(t, base, func(o *Options) { o.V3.Store = store })
	if err := c1.RefreshIfOlderThan(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A restart with the same (now spent) file content must use the stored, rotated token.
	c2 := newTestClient(t, base, func(o *Options) { o.V3.Store = store })
	if err := c2.RefreshIfOlderThan(ctx, 0); err != nil { // force: older than 0
		t.Fatalf("restart with unchanged file: %v", err)
	}
	if _, reuse := oauth.stats(); reuse != 0 {
		t.Fatal("spent seed reused")
	}
	// An operator issues new credentials: the changed file wins over the store.
	oauth.mu.Lock()
	oauth.valid["seed-2"] = true
	oauth.mu.Unlock()
	c3 := newTestClient(t, base, func(o *Options) { o.V3.Store = store; o.V3.RefreshToken = "seed-2" })
	if _, err := c3.ListReports(ctx, ""); err != nil {
		t.Fatal(err)
	}
	tok, _, err := store.Load(ctx, "10001")
	if err != nil || tok.SeedHash != SeedHash("seed-2") {
		t.Fatalf("not reseeded: %+v %v", tok.SeedHash, err)
	}
	oauth.mu.Lock()
	spent := oauth.spent["seed-2"]
	oauth.mu.Unlock()
	if !spent {
		t.Fatal("new seed not used")
	}
	// A client still configured with the old file (another replica not yet redeployed) keeps
	// using the store instead of seeding back.
	if err := c2.RefreshIfOlderThan(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, reuse := oauth.stats(); reuse != 0 {
		t.Fatalf("reuse %d", reuse)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/customers", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("pageSize") != "2" {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"INVALID_REQUEST","message":"At least one of page_size and page_token must be present","code":400}`)
			return
		}
		switch r.URL.Query().Get("pageToken") {
		case "":
			fmt.Fprint(w, `{"customers":[{"name":"accounts/10001/customers/1","customerOrganization":"A","createTime":"2024-01-03T16:29:10.491Z"},{"name":"accounts/10001/customers/2"}],"nextPageToken":"t2"}`)
		case "t2":
			fmt.Fprint(w, `{"customers":[{"name":"accounts/10001/customers/3","customerStatus":"ACTIVE"}]}`)
		}
	})
	mux.HandleFunc("/api/v3/accounts/10001/subscriptions", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("customerId") != "3" || q.Get("pagination.limit") != "2" {
			w.WriteHeader(400)
			return
		}
		switch q.Get("pagination.offset") {
		case "0":
			fmt.Fprint(w, `{"items":[{"id":"1","price":1.5},{"id":2,"price":"2.5"}],"paginationResponse":{"totalSize":"3"}}`)
		case "2":
			fmt.Fprint(w, `{"items":[{"id":"3"}],"paginationResponse":{"totalSize":3}}`)
		default:
			t.Errorf("offset %s requested past totalSize", q.Get("pagination.offset"))
			fmt.Fprint(w, `{"items":[]}`)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	cs, err := c.ListCustomers(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 || cs[0].ID != "1" || cs[2].ID != "3" || cs[0].Organization != "A" || cs[0].CreateTime.Nanosecond() != 491e6 {
		t.Fatalf("%+v", cs)
	}
	subs, err := c.ListSubscriptions(context.Background(), SubscriptionFilter{CustomerID: "3", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 3 || subs[1].ID != "2" || subs[1].Price.String() != "2.5" {
		t.Fatalf("%+v", subs)
	}
}

func TestV1BasicAuth(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/customers", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "key" || p != "secret" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"success":false,"message":"bad credentials"}`)
			return
		}
		if r.URL.Query().Get("offset") == "0" {
			fmt.Fprint(w, `{"success":true,"data":{"customer":[{"id":4022,"name":"Eric","company":"ACME"}]}}`)
			return
		}
		fmt.Fprint(w, `{"success":true,"data":{"customer":[]}}`)
	})
	mux.HandleFunc("/api/v1/reports/billing/azureplan", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("filter[date_range]") != "m-1-2024" || q.Get("filter[customer_id]") != "4022" || q.Get("filter[report_currency]") != "SEK" {
			t.Errorf("query %v", q)
		}
		http.ServeFile(w, r, "testdata/azureplan_v1.json")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(o *Options) { o.V3 = nil; o.V1 = &V1Auth{APIKey: "key", APISecret: "secret"} })
	cs, err := c.ListCustomersV1(context.Background())
	if err != nil || len(cs) != 1 || cs[0].ID != "4022" {
		t.Fatalf("%+v %v", cs, err)
	}
	var n int
	if err := c.AzurePlanV1(context.Background(), "4022", "2024-01", "SEK", func(AzurePlanLine) error { n++; return nil }); err != nil || n != 2 {
		t.Fatalf("n %d err %v", n, err)
	}
	if _, err := c.ListReports(context.Background(), ""); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("v3 call without v3 credentials: %v", err)
	}
	bad := newTestClient(t, srv.URL, func(o *Options) { o.V3 = nil; o.V1 = &V1Auth{APIKey: "key", APISecret: "wrong-secret"} })
	_, err = bad.ListCustomersV1(context.Background())
	if !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("%v", err)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	raw := strings.Repeat("k", 32)
	hexKey := strings.Repeat("ab", 32)
	b64 := "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
	for _, in := range []string{raw, hexKey + "\n", b64} {
		k, err := ParseKey([]byte(in))
		if err != nil || len(k) != 32 {
			t.Errorf("%q: %v", in, err)
		}
	}
	if _, err := ParseKey([]byte("short-secret-key")); err == nil || strings.Contains(err.Error(), "short-secret-key") {
		t.Errorf("bad key: %v", err)
	}
}

// A refresh whose response is lost must not be retried: the server may have rotated the token.
func TestRefreshNotRetriedAfterLostResponse(t *testing.T) {
	t.Parallel()
	var tokenCalls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		switch tokenCalls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503) // proves nothing was done: retried
		default:
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close() // processed or not? unknown: not retried
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	_, err := c.ListReports(context.Background(), "")
	if err == nil || tokenCalls.Load() != 2 {
		t.Fatalf("err %v, token calls %d (want 2: one 503 retry, no retry after the lost reply)", err, tokenCalls.Load())
	}
	if strings.Contains(err.Error(), "seed") {
		t.Fatalf("token in error: %v", err)
	}
}

func TestKeepFresh(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
	defer cancel()
	if err := c.KeepFresh(ctx, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	// Ticks at 0, 200, 400 ms; each finds the token older than 200 ms except possibly the first.
	if refreshes, reuse := oauth.stats(); refreshes < 2 || refreshes > 3 || reuse != 0 {
		t.Fatalf("refreshes %d reuse %d", refreshes, reuse)
	}
}

// A 200 from /oauth/token means Ion rotated the token, and a 502/504 may hide that it did: an
// unusable answer must not make the client (nor the call that needed the token) post the same
// refresh token again.
func TestRefreshNotRetriedAfterUnreadable200(t *testing.T) {
	t.Parallel()
	for name, reply := range map[string]func(http.ResponseWriter){
		"cut body":        func(w http.ResponseWriter) { fmt.Fprint(w, `{"access_token":"acc`) },
		"no access token": func(w http.ResponseWriter) { fmt.Fprint(w, `{"refresh_token":"r2"}`) },
		"bad gateway":     func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) },
	} {
		t.Run(name, func(t *testing.T) {
			var tokenCalls atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
				tokenCalls.Add(1)
				reply(w)
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil)
			_, err := c.ListReports(context.Background(), "")
			if err == nil || tokenCalls.Load() != 1 {
				t.Fatalf("err %v, token calls %d (want 1: the token may be spent)", err, tokenCalls.Load())
			}
		})
	}
}

// failingSaveStore is a MemoryTokenStore whose Save always fails (the KV is down).
type failingSaveStore struct{ MemoryTokenStore }

func (s *failingSaveStore) Save(context.Context, string, StoredToken, uint64) error {
	return errors.New("kv unavailable")
}

// After a rotation whose Save failed, the store still holds the refresh token this client
// spent. A later refresh (here after a 401) must start from the rotated token kept in memory,
// never spend the stored one a second time.
func TestUnsavedRotationNotSpentTwice(t *testing.T) {
	t.Parallel()
	oauth := newFakeOAuth("seed", time.Hour)
	mux := http.NewServeMux()
	mux.Handle("/oauth/token", oauth)
	mux.HandleFunc("/api/v3/accounts/10001/reports", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401) // revoked server-side before its expiry
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(o *Options) { o.V3.Store = &failingSaveStore{} })
	if _, err := c.ListReports(context.Background(), ""); err == nil {
		t.Fatal("want the persist error")
	}
	_, _ = c.ListReports(context.Background(), "")
	if refreshes, reuse := oauth.stats(); reuse != 0 || refreshes != 2 {
		t.Fatalf("refreshes %d, reuse of a spent refresh token %d (want 2, 0)", refreshes, reuse)
	}
}
