package fetcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/events"
)

// KV layout (bucket fetch_state unless noted):
//
//	plan.<sync id>                     the sync's plan and checkpoints (plan), compare-and-set
//	page.<acct>.<period>.<key hash>    canonical rows hash of the last published page of a key
//	leases: sync.<acct>.<period>       who runs the account-period now (lease)
//	periods: <acct>.<period>.mode      the pinned source mode, created once

// Task states.
const (
	statePending = "pending"
	stateDone    = "done"
	stateFailed  = "failed"
)

// task is one Ion request of a sync. Its id is derived from its page key, so a re-plan or a
// re-split yields the same ids.
type task struct {
	ID       string         `json:"id"`
	Key      events.PageKey `json:"key"`
	State    string         `json:"state"`
	Children []string       `json:"children,omitempty"` // set when it was split
	Error    string         `json:"error,omitempty"`
	PageID   *uuid.UUID     `json:"page_id,omitempty"`
	// Sums is the page's seller_cost_invoice by currency (decimal text), to check the parts
	// against the control totals.
	Sums map[string]string `json:"sums,omitempty"`
}

// plan is a sync's state: written before the request is acked, updated after every task.
type plan struct {
	SyncID    uuid.UUID             `json:"sync_id"`
	Request   events.SyncRequest    `json:"request"`
	ReportID  string                `json:"report_id,omitempty"`
	Error     string                `json:"error,omitempty"` // planning failed: the sync fails
	Customers []string              `json:"customers"`
	Control   []events.ControlTotal `json:"control"`
	Tasks     map[string]*task      `json:"tasks"`
	Requests  int                   `json:"requests"` // Ion HTTP requests spent so far
	StartedAt time.Time             `json:"started_at"`
	Completed bool                  `json:"completed"` // the completed event is out
}

func taskID(k events.PageKey) string {
	h := sha256.Sum256([]byte(k.Customer + "\x1f" + k.Entitlement + "\x1f" + k.From + "\x1f" + k.To))
	return hex.EncodeToString(h[:12])
}

func planKey(sync uuid.UUID) string { return "plan." + sync.String() }

func pageStateKey(acct, period string, k events.PageKey) string {
	return "page." + acct + "." + period + "." + taskID(k)
}

func (p *plan) terminal() bool {
	for _, t := range p.Tasks {
		if t.State == statePending {
			return false
		}
	}
	return true
}

func (p *plan) pending() []*task {
	var out []*task
	for _, t := range p.Tasks {
		if t.State == statePending {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Service) loadPlan(ctx context.Context, sync uuid.UUID) (*plan, uint64, error) {
	e, err := s.state.Get(ctx, planKey(sync))
	if err != nil {
		return nil, 0, err
	}
	var p plan
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, 0, fmt.Errorf("plan %s: %w", sync, err)
	}
	return &p, e.Revision(), nil
}

// updatePlan applies f under compare-and-set, retrying on a concurrent write. f returns false
// when there is nothing to change.
func (s *Service) updatePlan(ctx context.Context, sync uuid.UUID, f func(p *plan) (bool, error)) (*plan, error) {
	for i := 0; ; i++ {
		p, rev, err := s.loadPlan(ctx, sync)
		if err != nil {
			return nil, err
		}
		changed, err := f(p)
		if err != nil || !changed {
			return p, err
		}
		b, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		if _, err := s.state.Update(ctx, planKey(sync), b, rev); err == nil {
			return p, nil
		} else if i > 50 {
			return nil, fmt.Errorf("plan %s: update: %w", sync, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("plan %s: update: %w", sync, ctx.Err())
		case <-time.After(time.Duration(5+i) * time.Millisecond):
		}
	}
}

// lease is an account-period lease: one replica fetches for it at a time.
type lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

var errLeaseBusy = errors.New("account-period lease held by another fetcher")

// acquire takes the account-period lease, waiting up to wait for another holder to release
// it. An expired lease (its holder died) is taken over by compare-and-set.
func (s *Service) acquire(ctx context.Context, acct, period, replica string, wait time.Duration) (release func(), err error) {
	key := "sync." + acct + "." + period
	// Each acquisition is its own holder: workers of one replica exclude each other too, and a
	// release can only ever delete its own lease.
	holder := replica + "/" + uuid.NewString()
	deadline := time.Now().Add(wait)
	for {
		v, _ := json.Marshal(lease{Holder: holder, Expires: s.opts.Now().Add(s.opts.LeaseTTL)})
		_, err := s.leases.Create(ctx, key, v)
		if err == nil {
			return s.releaser(key, holder), nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		e, gerr := s.leases.Get(ctx, key)
		if gerr == nil {
			var l lease
			if json.Unmarshal(e.Value(), &l) != nil || s.opts.Now().After(l.Expires) {
				if _, err := s.leases.Update(ctx, key, v, e.Revision()); err == nil {
					return s.releaser(key, holder), nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, errLeaseBusy
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Service) releaser(key, holder string) func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e, err := s.leases.Get(ctx, key)
		if err != nil {
			return
		}
		var l lease
		if json.Unmarshal(e.Value(), &l) == nil && l.Holder == holder {
			_ = s.leases.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		}
	}
}

// pinMode pins the account-period to mode on first use and refuses the other mode after.
func (s *Service) pinMode(ctx context.Context, acct, period, mode string) error {
	key := acct + "." + period + ".mode"
	if _, err := s.periods.Create(ctx, key, []byte(mode)); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	e, err := s.periods.Get(ctx, key)
	if err != nil {
		return err
	}
	if got := string(e.Value()); got != mode {
		return fmt.Errorf("%w: account %s period %s is pinned to source mode %s; a %s request is refused (switching modes is an explicit migration)",
			errModeMismatch, acct, period, got, mode)
	}
	return nil
}

var errModeMismatch = errors.New("source mode mismatch")

// budget counts a sync's Ion requests in the request context; the transport refuses the
// request that would exceed it, so a sync cannot spend more than its budget even in retries.
type budget struct {
	used  atomic.Int64
	limit int64
}

type budgetKey struct{}

var errBudget = errors.New("Ion request budget of the sync is spent")

type budgetTransport struct{ next http.RoundTripper }

func (t budgetTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if b, ok := r.Context().Value(budgetKey{}).(*budget); ok {
		if b.used.Add(1) > b.limit {
			return nil, errBudget
		}
	}
	return t.next.RoundTrip(r)
}

func withBudget(ctx context.Context, spent, limit int) (context.Context, *budget) {
	b := &budget{limit: int64(limit - spent)}
	return context.WithValue(ctx, budgetKey{}, b), b
}
