package billingsim

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/events"
)

// TestStateFileSurvivesRestart: what the receiver stored is still held, and its idempotency keys
// still known, after a restart on the same state file — as a real billing platform's database.
func TestStateFileSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "state.json")
	secret := []byte("s3cret")
	start := func() (*Server, string) {
		t.Helper()
		s, err := New(Options{Secret: secret, StateFile: file})
		if err != nil {
			t.Fatal(err)
		}
		url, err := s.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(ctx) })
		return s, url
	}
	_, url := start()
	rec := events.UsageRecord{RecordID: uuid.New(), Revision: "ab", RevisionSeq: 1, BillingCurrency: "EUR",
		BilledCost: decimal.RequireFromString("12.3456789012"), IonCustomerID: "4022", FetchedAt: time.Now().UTC()}
	p := billing.NewPayload("10001", "4022", "2026-10", []events.UsageRecord{rec})
	body, err := p.Body()
	if err != nil {
		t.Fatal(err)
	}
	sink, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: url + "/deliveries", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Deliver(ctx, p, body); err != nil {
		t.Fatal(err)
	}

	s2, url2 := start()
	st := s2.State()
	if h, ok := st.Records[rec.RecordID.String()]; !ok || !h.BilledCost.Equal(rec.BilledCost) || st.Deliveries != 1 {
		t.Fatalf("after restart: records %v, deliveries %d", st.Records, st.Deliveries)
	}
	sink2, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: url2 + "/deliveries", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink2.Deliver(ctx, p, body); err != nil {
		t.Fatal(err)
	}
	if st := s2.State(); st.Replays != 1 || st.Deliveries != 1 || st.DuplicateRecords != 0 {
		t.Fatalf("resend after restart: replays %d deliveries %d duplicates %d, want 1/1/0", st.Replays, st.Deliveries, st.DuplicateRecords)
	}
}
