package usage_test

import (
	"os"
	"testing"

	"github.com/ionusage/connector/pkg/usage"
)

func TestLookups(t *testing.T) {
	t.Parallel()
	lk, err := usage.LoadLookups()
	if err != nil {
		t.Fatal(err)
	}
	for uri, want := range map[string]string{
		"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1":                    "microsoft.compute/virtualmachines",
		"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/s1/databases/db1":                   "microsoft.sql/servers/databases",
		"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.Insights/x/y": "microsoft.insights/x",
		"/subscriptions/s/resourceGroups/rg": "microsoft.resources/resourcegroups",
		"":                                   "",
		"not a uri":                          "",
	} {
		if got := usage.ResourceTypeOf(uri); got != want {
			t.Errorf("ResourceTypeOf(%q) = %q, want %q", uri, got, want)
		}
	}
	for rt, want := range map[string]string{
		"microsoft.compute/virtualmachines": "Virtual Machines",
		"microsoft.sql/servers/databases":   "Azure SQL Database",
		"microsoft.storage/storageaccounts": "Storage Accounts",   // listed twice; the own-namespace row wins
		"microsoft.sql/servers/databases/x": "Azure SQL Database", // unknown child type falls back to its parent
	} {
		if s, ok := lk.ServiceOfType(rt); !ok || s.Name != want {
			t.Errorf("ServiceOfType(%q) = %+v, want %q", rt, s, want)
		}
	}
	for _, c := range []struct{ meter, product, name, cat string }{
		{"Virtual Machines", "", "Virtual Machines", "Compute"},
		{"Bandwidth", "", "Bandwidth", "Networking"},
		{"", "Microsoft 365 E3", "Microsoft 365", "Business Applications"},
		{"", "Dv3 Series VM", "Virtual Machines", "Compute"},
		{"Quantum Widgets", "", "Quantum Widgets", "Other"},
		{"", "", "Other", "Other"},
	} {
		if s := lk.ServiceFor("", c.meter, c.product); s.Name != c.name || s.Category != c.cat {
			t.Errorf("ServiceFor(%q, %q) = %+v", c.meter, c.product, s)
		}
	}
	for _, spelling := range []string{"West Europe", "EU West", "westeurope", " WESTEUROPE "} {
		if r, ok := lk.Region(spelling); !ok || r.ID != "westeurope" || r.Name != "West Europe" {
			t.Errorf("Region(%q) = %+v %v", spelling, r, ok)
		}
	}
	for uom, want := range map[string]struct {
		block    string
		distinct string
	}{"1 Hour": {"1", "Hours"}, "10K": {"10000", "Units"}, "100 Hours": {"100", "Hours"}, "1 GB/Month": {"1", "GB/Month"}} {
		b, d, ok := lk.PricingUnit(uom)
		if !ok || b.String() != want.block || d != want.distinct {
			t.Errorf("PricingUnit(%q) = %s %q %v", uom, b, d, ok)
		}
	}
	if _, _, ok := lk.PricingUnit("1 Fortnight"); ok {
		t.Error("unknown unit reported as known")
	}
}

func TestDataAttribution(t *testing.T) {
	t.Parallel()
	// The MIT licence requires the notice to travel with the copy.
	for _, f := range []string{"data/LICENSE", "data/README.md"} {
		if b, err := os.ReadFile(f); err != nil || len(b) == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
