package transformer

import (
	"time"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/usage"
)

// PreviewInput is one raw page to transform without publishing anything.
type PreviewInput struct {
	Page    events.RawPage
	Body    []byte
	Account config.Account     // display name and fallback currency, as the stage reads them
	Charges *usage.ChargeTable // nil: usage.DefaultChargeTable, as the stage
	Now     time.Time          // dead letters' failed_at only
}

// Preview is what the transformer would publish for a page.
type Preview struct {
	Records []usage.Record
	// Held are the out-of-period lines, Bad the lines that would be dead-lettered; their
	// Reason says why.
	Held, Bad []events.DeadLetter
	Summary   events.PageSummary
}

// PreviewPage transforms one page with the stage's own code path (transformPage), for
// `ionconnector sync --dry-run`. An error wrapping events.ErrUndecodable means the stage would
// dead-letter the whole page.
func PreviewPage(in PreviewInput) (Preview, error) {
	charges := usage.DefaultChargeTable()
	if in.Charges != nil {
		charges = *in.Charges
	}
	out, err := transformPage(pageInput{
		Page: in.Page, Body: in.Body, Charges: charges, Currency: in.Account.Currency, AccountName: in.Account.Name,
		Source: Source, Now: in.Now,
	})
	if err != nil {
		return Preview{}, err
	}
	return Preview{Records: out.Records, Held: out.Held, Bad: out.Bad, Summary: out.Summary}, nil
}
