package ionsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ionusage/connector/pkg/atomicfile"
)

// Ion is one long-lived service: a refresh token it rotated yesterday is still the valid one
// today. A sandbox restarted between two runs of the connector must remember the same, or a
// connector that correctly kept its rotated token would be refused. Options.TokenStateFile keeps
// the refresh-token state (issued, used, expiry, the mint counter) in a file; access tokens are
// not kept (a client refreshes once on 401, as it must against Ion anyway).

type tokenState struct {
	N       uint64                     `json:"n"`
	Initial map[string]string          `json:"initial"`
	Refresh map[string]refreshTokenRec `json:"refresh"`
}

type refreshTokenRec struct {
	Account string    `json:"account"`
	Expires time.Time `json:"expires"`
	Used    bool      `json:"used"`
}

// loadTokens replaces the freshly minted refresh-token state with the file's, when it exists.
func (ts *tokenStore) load(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ionsim: token state: %w", err)
	}
	var st tokenState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("ionsim: token state %s: %w", path, err)
	}
	if st.N > ts.n {
		ts.n = st.N
	}
	for a, t := range st.Initial {
		ts.initial[a] = t
	}
	for t, r := range st.Refresh {
		ts.refresh[t] = &refreshToken{account: r.Account, expires: r.Expires, used: r.Used}
	}
	return nil
}

// save writes the refresh-token state atomically; the caller holds the sim's lock.
func (ts *tokenStore) save(path string) error {
	if path == "" {
		return nil
	}
	st := tokenState{N: ts.n, Initial: ts.initial, Refresh: make(map[string]refreshTokenRec, len(ts.refresh))}
	for t, r := range ts.refresh {
		st.Refresh[t] = refreshTokenRec{Account: r.account, Expires: r.expires, Used: r.used}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, func(w io.Writer) error { _, err := w.Write(b); return err })
}
