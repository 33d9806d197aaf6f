package usage

import "errors"

// PageResult is what one page of lines normalizes to.
type PageResult struct {
	Records []Record // in period, duplicates summed: to publish
	Held    []Record // outside the billing period: held, not billed, reported by reconcile
	// HeldLines is the line number of each Held record (same index), so a caller can hold
	// the source line itself.
	HeldLines []int
	Errors    []*LineError // every line that did not normalize, plus one out-of-period error per held line
}

// NormalizePage normalizes every line of a page, splits off out-of-period rows and sums
// duplicate record ids. A context error (a caller bug, not a bad line) aborts the page.
func NormalizePage(pc PageContext, lines []Line, tbl ChargeTable) (PageResult, error) {
	if err := pc.check(); err != nil {
		return PageResult{}, err
	}
	var res PageResult
	in := make([]Record, 0, len(lines))
	for _, l := range lines {
		r, err := Normalize(pc, l, tbl)
		if err != nil {
			res.Errors = append(res.Errors, lineErrors(err)...)
			continue
		}
		if err := InPeriod(pc, r); err != nil {
			var le *LineError
			if errors.As(err, &le) {
				le.Line = l.Number
				res.Errors = append(res.Errors, le)
			}
			res.Held = append(res.Held, r)
			res.HeldLines = append(res.HeldLines, l.Number)
			continue
		}
		in = append(in, r)
	}
	res.Records = MergeDuplicates(in)
	return res, nil
}

// lineErrors flattens the joined errors of one line.
func lineErrors(err error) []*LineError {
	if le, ok := err.(*LineError); ok {
		return []*LineError{le}
	}
	var out []*LineError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, lineErrors(e)...)
		}
		return out
	}
	return out
}
