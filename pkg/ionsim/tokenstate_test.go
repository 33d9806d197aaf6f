package ionsim

import (
	"path/filepath"
	"testing"
)

// TestTokenStateSurvivesRestart: with a token state file, a sandbox restarted between two runs
// accepts the refresh token it rotated before the restart and still refuses the spent ones.
func TestTokenStateSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	h1 := newHarness(t, Options{TokenStateFile: file})
	initial := h1.sim.Credentials().RefreshToken
	code, tr := h1.refresh(initial)
	if code != 200 || tr.RefreshToken == "" {
		t.Fatalf("first refresh: %d %+v", code, tr)
	}

	h2 := newHarness(t, Options{TokenStateFile: file})
	if got := h2.sim.Credentials().RefreshToken; got != initial {
		t.Fatalf("initial token changed across restart: %q, want %q", got, initial)
	}
	if code, tr := h2.refresh(initial); code != 400 || tr.Error != "cannot validate token: refresh token already used" {
		t.Fatalf("spent initial token after restart: %d %+v, want 400 reuse", code, tr)
	}
	code, tr2 := h2.refresh(tr.RefreshToken)
	if code != 200 || tr2.RefreshToken == "" || tr2.RefreshToken == tr.RefreshToken {
		t.Fatalf("rotated token after restart: %d %+v", code, tr2)
	}

	// Without the file, a restarted sandbox knows only its initial token.
	h3 := newHarness(t, Options{})
	if code, _ := h3.refresh(tr2.RefreshToken); code != 400 {
		t.Fatalf("stateless sandbox accepted a token of another instance: %d", code)
	}
}
