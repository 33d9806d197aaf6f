package events_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/ionusage/connector/pkg/events"
)

// eventsPkg is the import path of our payload types; types from other packages (time.Time,
// decimal.Decimal, uuid.UUID, json.RawMessage, maps) are leaves of the comparison.
var eventsPkg = reflect.TypeOf(events.Meta{}).PkgPath()

// The Go payload types and the schemas describe the same fields: same names at every level,
// and a field is required in the schema exactly when Go always writes it (not a pointer, no
// omitempty).
func TestSchemaDrift(t *testing.T) {
	for _, typ := range eventTypes() {
		t.Run(typ, func(t *testing.T) {
			root := readJSON(t, filepath.Join(schemasDir, typ+".json"))
			goType := reflect.TypeOf(payloads[typ]()).Elem()
			for _, e := range drift(goType.Name(), goType, root, root) {
				t.Error(e)
			}
		})
	}
}

type jsonField struct {
	name     string
	required bool
	typ      reflect.Type
}

func jsonFields(t reflect.Type) []jsonField {
	var fs []jsonField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		omitempty := strings.Contains(","+opts+",", ",omitempty,")
		fs = append(fs, jsonField{name: name, required: !omitempty && f.Type.Kind() != reflect.Pointer, typ: f.Type})
	}
	return fs
}

// drift compares struct type t with the object schema s and returns one message per difference.
func drift(path string, t reflect.Type, s, root map[string]any) []string {
	obj := objectSchema(s, root)
	if obj == nil {
		return []string{path + ": schema is not an object with properties"}
	}
	var errs []string
	if obj["additionalProperties"] != false {
		errs = append(errs, path+": schema object lacks additionalProperties: false")
	}
	props, _ := obj["properties"].(map[string]any)
	required := map[string]bool{}
	if r, ok := obj["required"].([]any); ok {
		for _, n := range r {
			required[n.(string)] = true
		}
	}
	seen := map[string]bool{}
	for _, f := range jsonFields(t) {
		seen[f.name] = true
		ps, ok := props[f.name].(map[string]any)
		if !ok {
			errs = append(errs, fmt.Sprintf("%s.%s: in Go, not in the schema", path, f.name))
			continue
		}
		if f.required != required[f.name] {
			errs = append(errs, fmt.Sprintf("%s.%s: required in Go %v, in the schema %v", path, f.name, f.required, required[f.name]))
		}
		ft := f.typ
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().PkgPath() == eventsPkg {
			ft = ft.Elem()
			ps, _ = resolve(ps, root)["items"].(map[string]any)
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == eventsPkg {
			errs = append(errs, drift(path+"."+f.name, ft, ps, root)...)
		}
	}
	var extra []string
	for n := range props {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	for _, n := range extra {
		errs = append(errs, fmt.Sprintf("%s.%s: in the schema, not in Go", path, n))
	}
	for n := range required {
		if !seen[n] {
			errs = append(errs, fmt.Sprintf("%s.%s: required by the schema, not in Go", path, n))
		}
	}
	return errs
}

// resolve follows a local "$ref": "#/$defs/name".
func resolve(s, root map[string]any) map[string]any {
	for s != nil {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		defs, _ := root["$defs"].(map[string]any)
		s, _ = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
	}
	return s
}

// objectSchema finds the object alternative of s: itself, or a branch of anyOf/oneOf.
func objectSchema(s, root map[string]any) map[string]any {
	s = resolve(s, root)
	if s == nil {
		return nil
	}
	if _, ok := s["properties"]; ok {
		return s
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		alts, _ := s[kw].([]any)
		for _, a := range alts {
			if m, ok := a.(map[string]any); ok {
				if o := objectSchema(m, root); o != nil {
					return o
				}
			}
		}
	}
	return nil
}

// The drift check itself must notice a difference; guard it against silently passing.
func TestSchemaDriftDetects(t *testing.T) {
	type outer struct {
		X  string   `json:"x"`
		Y  *string  `json:"y"`
		In struct{} `json:"in"`
	}
	schema := map[string]any{
		"additionalProperties": false,
		"required":             []any{"x", "y"},
		"properties": map[string]any{
			"x":  map[string]any{},
			"y":  map[string]any{},
			"z":  map[string]any{},
			"in": map[string]any{},
		},
	}
	got := strings.Join(drift("outer", reflect.TypeOf(outer{}), schema, schema), "\n")
	for _, want := range []string{"outer.y: required in Go false", "outer.in: required in Go true", "outer.z: in the schema, not in Go"} {
		if !strings.Contains(got, want) {
			t.Errorf("drift missed %q; got:\n%s", want, got)
		}
	}

	// Nested structs, through a $ref and through array items.
	root := readJSON(t, filepath.Join(schemasDir, "ion.raw.v1.page.json"))
	delete(root["$defs"].(map[string]any)["pageKey"].(map[string]any)["properties"].(map[string]any), "to")
	got = strings.Join(drift("RawPage", reflect.TypeOf(events.RawPage{}), root, root), "\n")
	if !strings.Contains(got, "RawPage.page_key.to: in Go, not in the schema") {
		t.Errorf("drift missed a nested field; got:\n%s", got)
	}
	root = readJSON(t, filepath.Join(schemasDir, "billing.v1.delivery.json"))
	rec := root["$defs"].(map[string]any)["deliveredRecord"].(map[string]any)
	rec["required"] = append(rec["required"].([]any), "replaces")
	got = strings.Join(drift("Delivery", reflect.TypeOf(events.Delivery{}), root, root), "\n")
	if !strings.Contains(got, "Delivery.records.replaces: required in Go false, in the schema true") {
		t.Errorf("drift missed a field of array items; got:\n%s", got)
	}
}
