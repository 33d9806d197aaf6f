// Package schematest validates event bodies against the JSON Schemas in schemas/ from tests, so
// any package can check the events it really emits against the contract.
package schematest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ionusage/connector/pkg/events"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// EnvDir overrides where the schemas are looked up, for builds without go.work.
const EnvDir = "IONUSAGE_SCHEMAS_DIR"

// Validate fails t unless body is valid against the schema of eventType.
func Validate(t testing.TB, eventType string, body []byte) {
	t.Helper()
	if err := Check(eventType, body); err != nil {
		t.Fatalf("%s body does not match its schema: %v\nbody: %s", eventType, err, body)
	}
}

// Check reports whether body is valid against the schema of eventType.
func Check(eventType string, body []byte) error {
	sch, err := schemaFor(eventType)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(v)
}

var (
	dirOnce sync.Once
	dir     string
	dirErr  error

	mu       sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

// Dir returns the schemas directory: $IONUSAGE_SCHEMAS_DIR, else schemas/ beside the go.work
// found by walking up from the working directory (a test's working directory is its package).
func Dir() (string, error) {
	dirOnce.Do(func() { dir, dirErr = findDir() })
	return dir, dirErr
}

func findDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return filepath.Join(d, "schemas"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("schematest: no go.work above %s; set %s", wd, EnvDir)
		}
	}
}

// Compile compiles the schema file of eventType in dir, with formats and content encodings
// asserted (draft 2020-12 only annotates them by default).
func Compile(dir, eventType string) (*jsonschema.Schema, error) {
	f, err := os.Open(filepath.Join(dir, eventType+".json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", eventType, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	// Register under the $id so that ce-dataschema resolves to the file without a network loader.
	uri := events.SchemaURI(eventType)
	if err := c.AddResource(uri, doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", eventType, err)
	}
	return c.Compile(uri)
}

func schemaFor(eventType string) (*jsonschema.Schema, error) {
	mu.Lock()
	defer mu.Unlock()
	if s, ok := compiled[eventType]; ok {
		return s, nil
	}
	d, err := Dir()
	if err != nil {
		return nil, err
	}
	s, err := Compile(d, eventType)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("schematest: no schema for %q in %s", eventType, d)
	}
	if err != nil {
		return nil, err
	}
	compiled[eventType] = s
	return s, nil
}
