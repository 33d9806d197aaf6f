package transformer

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/usage"
)

// A page that cannot be parsed at all is undecodable as a whole (the router dead-letters it).
func TestUndecodablePages(t *testing.T) {
	good := loadPage(t, "testdata/v3_json.page.json")
	cases := map[string]func(p *events.RawPage){
		"truncated body": func(p *events.RawPage) { p.Body = p.Body[:len(p.Body)/2] },
		"no request":     func(p *events.RawPage) { p.Request = nil },
		"no columns": func(p *events.RawPage) {
			p.Request = json.RawMessage(`{"reportId":"49038","specs":{"selectedColumns":[]}}`)
		},
		"bare column id": func(p *events.RawPage) {
			p.Request = json.RawMessage(`{"specs":{"selectedColumns":[{"id":"799050"}]}}`)
		},
		"unknown mode":  func(p *events.RawPage) { p.Mode = "v2" },
		"no column set": func(p *events.RawPage) { p.ColumnSetVersion = "" },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			p := good
			edit(&p)
			_, err := transformPage(pageInput{Page: p, Body: []byte(p.Body), Charges: usage.DefaultChargeTable(), Source: Source, Now: goldenNow})
			if !errors.Is(err, events.ErrUndecodable) {
				t.Fatalf("err = %v, want ErrUndecodable", err)
			}
		})
	}
}

// Re-transforming a page yields the same record ids, revisions and event ids, whatever the clock.
func TestRetransformIsIdentical(t *testing.T) {
	for _, in := range goldenPages(t) {
		p := loadPage(t, in)
		a := transformFile(t, in)
		b, err := transformPage(pageInput{Page: p, Body: []byte(p.Body), Charges: usage.DefaultChargeTable(), Currency: "EUR",
			Source: Source, Now: goldenNow.AddDate(0, 1, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Messages) != len(b.Messages) || a.SummaryM.UUID != b.SummaryM.UUID {
			t.Fatalf("%s: batches or summary id differ", in)
		}
		for i := range a.Messages {
			for j := range a.Messages[i].Msgs {
				if a.Messages[i].Msgs[j].UUID != b.Messages[i].Msgs[j].UUID {
					t.Errorf("%s: event %d/%d id differs", in, i, j)
				}
			}
		}
		for i := range a.Records {
			if a.Records[i].RecordID != b.Records[i].RecordID || a.Records[i].Revision != b.Records[i].Revision {
				t.Errorf("%s: record %d identity differs", in, i)
			}
		}
	}
}

func TestV1Currency(t *testing.T) {
	for in, want := range map[string]string{
		`"filter%5Breport_currency%5D=SEK&filter%5Bcustomer_id%5D=1"`: "SEK",
		`{"filter[report_currency]":"DKK"}`:                           "DKK",
		`{"filter[report_currency]":["NOK"]}`:                         "NOK",
		`{"query":"filter[report_currency]=EUR"}`:                     "EUR",
		`{}`: "",
	} {
		if got := v1Currency(json.RawMessage(in)); got != want {
			t.Errorf("v1Currency(%s) = %q, want %q", in, got, want)
		}
	}
}
