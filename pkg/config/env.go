package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvVar documents one environment override.
type EnvVar struct {
	Name  string // e.g. NATS_URL
	Field string // the YAML path it overrides, e.g. nats.url
}

// tokenKeyEnv carries the token-store key itself rather than a path, so it is read by Load
// directly instead of through an env tag (the Config keeps no secret values in its fields).
const tokenKeyEnv = "ION_TOKEN_KEY"

// EnvVars lists every environment variable Load reads, in file order. It is derived from the
// env struct tags, so it is the documentation that cannot go stale.
func EnvVars() []EnvVar {
	var out []EnvVar
	walkEnv(reflect.TypeOf(Config{}), "", func(path string, _ []int, name string) {
		out = append(out, EnvVar{Name: name, Field: path})
	})
	return append(out, EnvVar{Name: tokenKeyEnv, Field: "token_key_file (the key itself)"})
}

// walkEnv calls fn for every field with an env tag, depth first. Slices are not entered: per-
// account settings have no environment overrides, since an index is no stable name.
func walkEnv(t reflect.Type, prefix string, fn func(path string, index []int, name string)) {
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			path := joinPath(prefix, yamlKey(f))
			idx := append(append([]int(nil), index...), i)
			if name := f.Tag.Get("env"); name != "" {
				fn(path, idx, name)
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, path, idx)
			}
		}
	}
	walk(t, prefix, nil)
}

// applyEnv overrides fields from the environment. A variable that is unset or empty leaves
// the file's value alone.
func (c *Config) applyEnv(env func(string) string) []FieldError {
	var errs []FieldError
	root := reflect.ValueOf(c).Elem()
	walkEnv(root.Type(), "", func(path string, index []int, name string) {
		raw := strings.TrimSpace(env(name))
		if raw == "" {
			return
		}
		if err := setScalar(root.FieldByIndex(index), raw); err != nil {
			errs = append(errs, FieldError{Field: path, Message: fmt.Sprintf("from %s: %v", name, err)})
		}
	})
	if v := env(tokenKeyEnv); strings.TrimSpace(v) != "" {
		c.tokenKey = NewSecret(v)
	}
	return errs
}

var durationType = reflect.TypeOf(time.Duration(0))

// setScalar parses raw into v by v's kind. Values are quoted in errors: env overrides are
// never secrets (those come from files, or ION_TOKEN_KEY which bypasses this).
func setScalar(v reflect.Value, raw string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration (such as 30s or 720h)", raw)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", raw)
		}
		v.SetBool(b)
	default:
		// A programming error: an env tag on a field kind this walker does not know.
		return fmt.Errorf("environment override of a %s field is not supported", v.Type())
	}
	return nil
}

// yamlKey is the field's key in the file.
func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
