package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Redacted returns the configuration as a tree of the file's keys, safe to log or print: it
// holds no secret values anyway, and URLs lose their userinfo. Durations appear as strings.
func (c *Config) Redacted() map[string]any {
	cp := *c
	cp.NATS.URL = redactURL(cp.NATS.URL)
	cp.Accounts = make([]Account, len(c.Accounts))
	for i, a := range c.Accounts {
		a.IonURL = redactURL(a.IonURL)
		a.Schedules = append([]string(nil), a.Schedules...)
		cp.Accounts[i] = a
	}
	if h := c.Sinks.HTTP; h != nil {
		hc := *h
		hc.URL = redactURL(hc.URL)
		cp.Sinks.HTTP = &hc
	}
	// A round trip through YAML gives the file's key names and readable durations.
	b, err := yaml.Marshal(&cp)
	if err != nil {
		return map[string]any{"error": err.Error()} // cannot happen for these types
	}
	var out map[string]any
	if err := yaml.Unmarshal(b, &out); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return out
}

// YAML returns the configuration as a config file that Load reads back (the demo writes its
// own this way). It holds file paths, never secret values.
func (c *Config) YAML() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return b, nil
}
