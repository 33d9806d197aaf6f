package ionconnector

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
	iusage "github.com/ionusage/connector/pkg/usage"
	"github.com/ionusage/connector/services/fetcher"
	"github.com/ionusage/connector/services/transformer"
)

// usageRecords returns the stored record events by category, and their number.
func usageRecords(t *testing.T, d service.Deps) (map[string]int, int) {
	t.Helper()
	by, n := map[string]int{}, 0
	err := scanStream(context.Background(), d.JS, events.StreamUsage, "usage.v1.record.>", func(m jetstreamMsg) error {
		var r events.UsageRecord
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return err
		}
		by[r.ChargeCategory]++
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return by, n
}

// TestReplayAfterMappingChange: raw pages fetched and transformed once are replayed through a
// transformer whose charge table maps consumption differently. Only the records that change
// are stored as new revisions (every other one is the same event, dropped as a duplicate), a
// second replay changes nothing, Ion is not called, and the temporary consumer is gone.
func TestIntegrationReplayAfterMappingChange(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end replay")
	}
	e := newOpEnv(t)
	d := e.deps(e.cfgB)
	e.run(d, fetcher.Run)
	stopT := e.run(d, transformer.Run)
	req := e.requestSync(d, "10001", "replay-base")
	bustest.Eventually(t, 60*time.Second, func() error {
		if n := e.completions(d, req); n != 1 {
			return fmt.Errorf("%d completions", n)
		}
		c, err := d.JS.Consumer(context.Background(), events.StreamRaw, transformer.Name)
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil || info.NumPending+uint64(info.NumAckPending) != 0 {
			return fmt.Errorf("transformer pending %v %v", info, err)
		}
		return nil
	})
	stopT()
	before, n0 := usageRecords(t, d)
	if n0 == 0 || before[iusage.CategoryUsage] == 0 {
		t.Fatalf("records before replay: %v", before)
	}
	ionCalls := len(e.sim.Stats().Requests)

	old := replayTransformer
	t.Cleanup(func() { replayTransformer = old })
	m := iusage.DefaultChargeTableMap()
	m[iusage.V1ChargeUsage] = iusage.CategoryAdjustment // the "fix"
	table, err := iusage.NewChargeTable(m)
	if err != nil {
		t.Fatal(err)
	}
	replayTransformer = func(o *transformer.Options) { o.Charges = &table }

	var counts replayCounts
	r := e.cli("replay", "--stream", "ION_RAW", "--from-seq", "1", "--to", "transformer", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &counts); err != nil || r.code != 0 {
		t.Fatalf("replay: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	after, n1 := usageRecords(t, d)
	changed := int64(before[iusage.CategoryUsage])
	if counts.Records != int64(n0) || counts.NewRecords != changed || int64(n1-n0) != changed || counts.Handled == 0 ||
		uint64(counts.Handled) != counts.Matched {
		t.Errorf("replay counts %+v; records %d → %d, %d changed; before %v after %v", counts, n0, n1, changed, before, after)
	}
	if after[iusage.CategoryAdjustment]-before[iusage.CategoryAdjustment] != int(changed) {
		t.Errorf("categories before %v after %v", before, after)
	}
	r = e.cli("replay", "--stream", "ION_RAW", "--since", "2000-01-01", "--subject", "ion.raw.v1.page.10001", "--to", "transformer")
	if r.code != 0 || !strings.Contains(r.stdout, "of which 0 changed") {
		t.Errorf("second replay: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, n2 := usageRecords(t, d); n2 != n1 {
		t.Errorf("second replay stored %d records", n2-n1)
	}
	if n := len(e.sim.Stats().Requests); n != ionCalls {
		t.Errorf("replay called Ion (%d → %d requests)", ionCalls, n)
	}
	rawStream, err := d.JS.Stream(context.Background(), events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	names := rawStream.ConsumerNames(context.Background())
	for n := range names.Name() {
		if n != transformer.Name {
			t.Errorf("consumer %s left behind", n)
		}
	}
	for _, args := range [][]string{
		{"replay", "--stream", "ION_RAW", "--to", "transformer"},
		{"replay", "--stream", "ION_RAW", "--from-seq", "1", "--since", "2025-01-01", "--to", "transformer"},
		{"replay", "--stream", "USAGE", "--from-seq", "1", "--to", "transformer"},
		{"replay", "--stream", "ION_RAW", "--from-seq", "1", "--to", "publisher"},
		{"replay", "--stream", "ION_RAW", "--since", "yesterday", "--to", "transformer"},
	} {
		if r := e.cli(args...); r.code != service.ExitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, r.code, r.stderr)
		}
	}
}
