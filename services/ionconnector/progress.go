package ionconnector

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// progress draws one live line on a terminal, and a line every few seconds' worth of polls
// elsewhere (CI logs, pipes), so it never floods a log.
type progress struct {
	w     io.Writer
	tty   bool
	polls int
	last  string
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(w *watcher) {
	if p == nil {
		return
	}
	stage := "fetching"
	bar := progressBar(0, 0)
	if w.completed != nil {
		total := len(w.completed.Manifest.Pages)
		done := 0
		for _, id := range w.completed.Manifest.Pages {
			if w.summaries[id.String()] {
				done++
			}
		}
		stage = fmt.Sprintf("pages %d/%d", done, total)
		bar = progressBar(done, total)
		if done == total {
			stage += ", reconciling"
		}
	} else if n := len(w.summaries); n > 0 {
		stage = fmt.Sprintf("fetching, %d pages transformed", n)
	}
	p.show(fmt.Sprintf("[%s] %s · %d records · %d delivered in %d deliveries", bar, stage, w.records, w.delivered, w.deliveries))
}

// show draws line: in place on a terminal, else every tenth call when it changed.
func (p *progress) show(line string) {
	p.polls++
	switch {
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	case line != p.last && p.polls%10 == 1:
		fmt.Fprintln(p.w, line)
	}
	p.last = line
}

// progressBar is a 24-cell bar of done out of total (empty while total is unknown).
func progressBar(done, total int) string {
	n := 0
	if total > 0 {
		n = 24 * min(done, total) / total
	}
	return strings.Repeat("█", n) + strings.Repeat("·", 24-n)
}

func (p *progress) done() {
	if p == nil {
		return
	}
	if p.tty {
		fmt.Fprintln(p.w)
	} else if p.last != "" {
		fmt.Fprintln(p.w, p.last)
	}
}

// printSummary writes the human summary table of a followed sync; receiverRecords < 0 leaves
// out the billing receiver's line (no receiver in the run).
func printSummary(w io.Writer, res followResult, receiverRecords int) {
	s, r := res.Summary, res.Reconciliation
	fmt.Fprintf(w, "\nIon usage connector · account %s · period %s\n\n", r.Account, s.Period)
	fmt.Fprintf(w, "  %-28s %d\n", "pages in the sync", s.Pages)
	fmt.Fprintf(w, "  %-28s %d\n", "customers", len(res.Completed.Manifest.Customers))
	fmt.Fprintf(w, "  %-28s %d\n", "records of the period", s.Records)
	fmt.Fprintf(w, "  %-28s %d in %d deliveries\n", "delivered by this run", s.Delivered, s.Deliveries)
	fmt.Fprintf(w, "  %-28s %d\n", "held (out of period)", s.Held)
	fmt.Fprintf(w, "  %-28s %d\n", "dead letters", s.DeadLetters)
	if receiverRecords >= 0 {
		fmt.Fprintf(w, "  %-28s %d\n", "held by the billing receiver", receiverRecords)
	}
	curs := make([]string, 0, len(s.Totals))
	for c := range s.Totals {
		curs = append(curs, c)
	}
	sort.Strings(curs)
	for _, c := range curs {
		v, _ := decimal.NewFromString(s.Totals[c])
		fmt.Fprintf(w, "  %-28s %s %s (invoice: %s)\n", "billed cost", c, s.Totals[c], v.StringFixedBank(2))
	}
	matched := 0
	for _, row := range r.Rows {
		if row.Match {
			matched++
		}
	}
	verdict := "RECONCILED"
	if !s.Reconciled {
		verdict = "NOT RECONCILED"
		if r.Reason != "" {
			verdict += ": " + r.Reason
		}
	}
	fmt.Fprintf(w, "  %-28s %d of %d customer×currency rows equal Ion's control totals\n", "reconciliation", matched, len(r.Rows))
	fmt.Fprintf(w, "\n  %s\n\n", verdict)
}
