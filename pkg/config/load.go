package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the configuration: the YAML file at path ("" means none), then the environment
// overrides listed by EnvVars, then defaults, then Validate. env is usually os.Getenv; tests
// pass a map's lookup. Every problem found, from the file's shape to the values' meaning, is
// returned at once in a *ValidationError; a file that cannot be read or is not YAML at all
// gives a plain error.
func Load(path string, env func(string) string) (*Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	c := &Config{}
	var errs []FieldError
	lines := map[string]int{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if errs, err = decode(data, c, lines); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	errs = append(errs, c.applyEnv(env)...)
	c.setDefaults()

	// A field whose value could not be decoded keeps its zero value or default; a second
	// complaint about it, or about the fields below it, would only be noise.
	bad := map[string]bool{}
	for _, e := range errs {
		bad[e.Field] = true
	}
	var verr *ValidationError
	if err := c.Validate(); errors.As(err, &verr) {
		for _, e := range verr.Errors {
			if underBad(bad, e.Field) {
				continue
			}
			if e.Line == 0 {
				e.Line = lineOf(lines, e.Field)
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	return c, nil
}

// decode fills c from data. Before yaml.v3 decodes, a walk over the node tree beside the Config
// type finds unknown keys and values of the wrong type, so that each is reported with its key
// path (yaml.v3's own messages name Go types instead) and all are reported together. The walk
// also records the line of every path, for semantic errors found later.
func decode(data []byte, c *Config, lines map[string]int) ([]FieldError, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err // not YAML: nothing sensible to add
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	w := walker{lines: lines}
	w.check(doc.Content[0], reflect.TypeOf(*c), "")

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if len(w.errs) > 0 || err == nil || errors.Is(err, io.EOF) {
		// The walk's errors are the better report of the same problems; yaml.v3 still
		// decoded everything else, so validation can go on.
		return w.errs, nil
	}
	// Something the walk does not model. Keep yaml.v3's words rather than lose the error.
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, m := range te.Errors {
			w.errs = append(w.errs, FieldError{Message: m})
		}
		return w.errs, nil
	}
	return nil, err
}

// underBad reports whether path or one of its ancestors already has an error.
func underBad(bad map[string]bool, path string) bool {
	for path != "" {
		if bad[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return false
		}
		path = path[:i]
	}
	return false
}

// lineOf finds the line of path, or of its nearest ancestor in the file: a missing key is
// best pointed at by the mapping that lacks it.
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

type walker struct {
	errs  []FieldError
	lines map[string]int
}

func (w *walker) fail(path string, line int, format string, args ...any) {
	w.errs = append(w.errs, FieldError{Field: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

// check compares node n with the Go type t that path decodes into.
func (w *walker) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if path != "" {
		w.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(path, n.Line, "expected a mapping of keys, found %s", describeNode(n))
			return
		}
		w.checkMapping(n, t, path, map[string]int{})
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(path, n.Line, "expected a list, found %s", describeNode(n))
			return
		}
		for i, item := range n.Content {
			w.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			w.fail(path, n.Line, "expected %s, found %s", describeType(t), describeNode(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.fail(path, n.Line, "%q is not %s", n.Value, describeType(t))
		}
	}
}

func (w *walker) checkMapping(n *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	fields := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() && f.Tag.Get("yaml") != "-" {
			fields[yamlKey(f)] = f
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.Tag == "!!merge" { // YAML merge key: check what it brings in
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			if v.Kind == yaml.MappingNode {
				w.checkMapping(v, t, path, seen)
			}
			continue
		}
		kp := joinPath(path, k.Value)
		f, ok := fields[k.Value]
		if !ok {
			msg := "unknown key"
			if s := suggest(k.Value, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			w.fail(kp, k.Line, "%s", msg)
			continue
		}
		if line, dup := seen[k.Value]; dup {
			w.fail(kp, k.Line, "duplicate key (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		w.check(v, f.Type, kp)
	}
}

// suggest returns the known key closest to an unknown one, if it is plausibly a typo.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3 // at most two edits
	for k := range fields {
		if d := editDistance(strings.ToLower(key), k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration (such as 30s or 720h)"
	case t.Kind() == reflect.Bool:
		return "a boolean (true or false)"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	default:
		return "a " + t.String()
	}
}
