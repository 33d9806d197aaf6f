package ion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
)

func newKV(t *testing.T) jetstream.KeyValue {
	t.Helper()
	js := bustest.JetStream(t)
	// Provisioning creates the bucket in production; tests do it themselves.
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: TokenBucket, History: 5})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestKVTokenStoreRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kv := newKV(t)
	s, err := NewKVTokenStore(kv, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, "10001"); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("empty: %v", err)
	}
	tok := StoredToken{RefreshToken: "rt-secret-1", AccessToken: "at-1", AccessExpiry: time.Now().Add(time.Hour).UTC().Round(0),
		RefreshedAt: time.Now().UTC().Round(0), SeedHash: SeedHash("seed")}
	if err := s.Save(ctx, "10001", tok, 0); err != nil {
		t.Fatal(err)
	}
	got, rev, err := s.Load(ctx, "10001")
	if err != nil || rev == 0 || got.RefreshToken != tok.RefreshToken || !got.AccessExpiry.Equal(tok.AccessExpiry) || got.SeedHash != tok.SeedHash {
		t.Fatalf("%+v %d %v", got, rev, err)
	}
	// The stored bytes are sealed: no token in clear text.
	e, err := kv.Get(ctx, "token.10001")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value(), []byte("rt-secret-1")) || bytes.Contains(e.Value(), []byte("at-1")) {
		t.Fatal("token stored in clear")
	}
	// CAS: a stale revision loses; creating an existing record loses.
	if err := s.Save(ctx, "10001", tok, rev+7); !errors.Is(err, ErrRevisionConflict) {
		t.Fatalf("stale rev: %v", err)
	}
	if err := s.Save(ctx, "10001", tok, 0); !errors.Is(err, ErrRevisionConflict) {
		t.Fatalf("create over existing: %v", err)
	}
	if err := s.Save(ctx, "10001", tok, rev); err != nil {
		t.Fatalf("current rev: %v", err)
	}

	// A wrong key cannot read it, and the error says so without content.
	wrong, _ := NewKVTokenStore(kv, testKey(2))
	_, _, err = wrong.Load(ctx, "10001")
	if err == nil || bytes.Contains([]byte(err.Error()), []byte("rt-secret")) {
		t.Fatalf("wrong key: %v", err)
	}
	// The account is additional data: a record copied under another account does not open.
	if _, err := kv.Put(ctx, "token.10002", e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, "10002"); err == nil {
		t.Fatal("record moved to another account decrypted")
	}
	if _, err := NewKVTokenStore(kv, []byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	// Odd account ids map to valid keys.
	if err := s.Save(ctx, "acct with space/ü", tok, 0); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Load(ctx, "acct with space/ü"); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Fatal(err)
	}
}

func TestKVTokenStoreLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := NewKVTokenStore(newKV(t), testKey(1))
	rel, err := s.Lease(ctx, "10001", "a", 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lease(ctx, "10001", "b", time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second holder: %v", err)
	}
	if r, err := s.Lease(ctx, "10002", "b", time.Second); err != nil {
		t.Fatalf("other account: %v", err)
	} else {
		r()
	}
	rel()
	rel() // idempotent
	relB, err := s.Lease(ctx, "10001", "b", 300*time.Millisecond)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// b "crashes" without releasing: the lease expires and c takes it over.
	time.Sleep(350 * time.Millisecond)
	relC, err := s.Lease(ctx, "10001", "c", time.Second)
	if err != nil {
		t.Fatalf("take over expired: %v", err)
	}
	relB() // b's late release must not remove c's lease
	if _, err := s.Lease(ctx, "10001", "d", time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("late release removed the new holder's lease: %v", err)
	}
	relC()

	// Many contenders at once: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := s.Lease(ctx, "10003", fmt.Sprint(i), time.Minute); err == nil {
				wins.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d winners", wins.Load())
	}
}

// Two clients on one KV store (two processes in production) with 1s access tokens.
func TestKVSharedStoreNoReuse(t *testing.T) {
	t.Parallel()
	s, _ := NewKVTokenStore(newKV(t), testKey(1))
	testSharedStore(t, s)
}

func TestKVSeedFileChange(t *testing.T) {
	t.Parallel()
	s, _ := NewKVTokenStore(newKV(t), testKey(1))
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
	testSeedFileChange(t, srv.URL, oauth, s)
}
