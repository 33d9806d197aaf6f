package schematest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
)

func TestDirFindsRepositorySchemas(t *testing.T) {
	d, err := schematest.Dir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, events.TypeUsageRecord+".json")); err != nil {
		t.Fatal(err)
	}
}

func TestValidateAndCheck(t *testing.T) {
	d, _ := schematest.Dir()
	body, err := os.ReadFile(filepath.Join(d, "examples", events.TypeSyncRequested+".json"))
	if err != nil {
		t.Fatal(err)
	}
	schematest.Validate(t, events.TypeSyncRequested, body)
	if schematest.Check(events.TypeSyncRequested, []byte(`{"account":"1"}`)) == nil {
		t.Error("an incomplete request passed")
	}
	if schematest.Check(events.TypeSyncRequested, []byte(`{`)) == nil {
		t.Error("broken JSON passed")
	}
	if schematest.Check("no.such.type", body) == nil {
		t.Error("an unknown type passed")
	}
}
