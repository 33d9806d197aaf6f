package fetcher

import (
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/ion"
)

// pageHash computes a page's canonical rows hash (see hashLines) while the body decodes, one
// row at a time, instead of from a []ion.Row of the whole page: only each row's canonical line
// is kept (the lines must be sorted before hashing), with the sums by currency and whether the
// rows are daily (what split needs of a truncated page).
type pageHash struct {
	idx      [4]int // positions of hashCols, found on the first row
	ready    bool
	lines    []string
	sums     map[string]decimal.Decimal
	timed    int  // rows with both usage times
	notDaily bool // some row spans more than a day
	buf      []byte
}

// hashCols are the columns add reads besides the values themselves, in idx order.
var hashCols = [4]string{"invoice_currency", "seller_cost_invoice", "usage_starttime", "usage_endtime"}

// reset starts over: the client calls it before each attempt at the request.
func (h *pageHash) reset() {
	*h = pageHash{lines: h.lines[:0], buf: h.buf[:0]}
}

// add takes one leaf row. The row's values are only borrowed (the decoder reuses them).
func (h *pageHash) add(r ion.Row) error {
	if !h.ready {
		for i, k := range hashCols {
			h.idx[i] = ion.ColumnIndex(r.Columns(), k)
		}
		h.sums, h.ready = map[string]decimal.Decimal{}, true
	}
	h.buf = h.buf[:0]
	for i, v := range r.Values {
		if i > 0 {
			h.buf = append(h.buf, '\x1f')
		}
		h.buf = append(h.buf, canonical(v)...)
	}
	h.lines = append(h.lines, string(h.buf))

	// currencyOf: the invoice currency column, else the money value's own currency.
	cost := h.value(r, 1)
	cur := h.value(r, 0).Text
	if cur == "" {
		cur = cost.Currency
	}
	h.sums[cur] = h.sums[cur].Add(cost.Number)

	st, en := h.value(r, 2).Time, h.value(r, 3).Time
	if !st.IsZero() && !en.IsZero() {
		h.timed++
		if en.Sub(st) > 24*time.Hour {
			h.notDaily = true
		}
	}
	return nil
}

// value is r.Get(hashCols[k]), by the position found once.
func (h *pageHash) value(r ion.Row, k int) ion.Value {
	if i := h.idx[k]; i >= 0 && i < len(r.Values) {
		return r.Values[i]
	}
	return ion.Value{Null: true}
}

// result is the hash over cols' keys and the rows added, the row count and the sums.
func (h *pageHash) result(cols []ion.ReportColumn) (string, int, map[string]string) {
	keys := make([]string, len(cols))
	for i, c := range cols {
		keys[i] = c.Key()
	}
	return hashLines(strings.Join(keys, "\x1f"), h.lines), len(h.lines), sumText(h.sums)
}

// daily reports whether the rows carry one usage day each (not the month's bounds).
func (h *pageHash) daily() bool { return !h.notDaily && h.timed > 0 }
