package ion

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Raw fetches keep Ion's response bytes verbatim beside the decoded result, so the fetcher can
// store a page as Ion sent it and the transformer can decode it later without calling Ion.

// MaxRawBody bounds one raw response body held in memory.
const MaxRawBody = 256 << 20

// RawReport is one report data response: what was sent, what came back, and its decoding.
type RawReport struct {
	Endpoint string         // "POST /api/v3/accounts/{a}/reports/{id}/data"
	Request  []byte         // the JSON body sent, with the resolved column list
	Body     []byte         // the response bytes, verbatim
	Columns  []ReportColumn // the requested columns, in value order
	Meta     ReportMeta
	Rows     []Row // leaf rows (subtotals only with ReportRequest.IncludeSubtotals)
}

// ReportDataRaw is ReportData keeping the response bytes. The body is decoded only once it has
// been read completely, so a cut body is retried like any failed attempt.
func (c *Client) ReportDataRaw(ctx context.Context, reportID string, req ReportRequest) (RawReport, error) {
	r, cols, body, err := c.prepareReport(ctx, reportID, req)
	if err != nil {
		return RawReport{}, err
	}
	path := c.v3("/reports/%s/data", url.PathEscape(string(r.ReportID)))
	out := RawReport{Endpoint: http.MethodPost + " " + path, Request: body, Columns: cols}
	err = c.do(ctx, call{
		method: http.MethodPost, path: path, body: body, auth: authV3,
		handle: func(resp *http.Response) error {
			b, err := readRaw(resp.Body, path)
			if err != nil {
				return err
			}
			var rows []Row
			meta, err := decodeReportData(bytes.NewReader(b), path, cols, req.IncludeSubtotals, func(row Row) error {
				rows = append(rows, row)
				return nil
			})
			if err != nil {
				return retryableBody(err, path)
			}
			out.Body, out.Meta, out.Rows = b, meta, rows
			return nil
		},
	})
	return out, err
}

// ReportPage is one report data response kept for storage: the bytes as Ion sent them, and
// what the body says about itself. Its rows went to the caller's function as they decoded.
type ReportPage struct {
	Endpoint string         // "POST /api/v3/accounts/{a}/reports/{id}/data"
	Request  []byte         // the JSON body sent, with the resolved column list
	Columns  []ReportColumn // the requested columns, in value order
	Meta     ReportMeta
	Body     *Body // the response bytes, verbatim; Release it when done
}

// ReportDataPage is ReportDataRaw for pages of any size: rows are not collected but handed to
// fn while the body decodes, and the body is held in pooled chunks rather than one growing
// slice. The Row given to fn is overwritten by the next one: fn copies what it keeps. begin
// is called before each attempt's first row, so a caller restarting what it accumulates there
// ends with the rows of the one attempt that succeeded (a cut body is fetched again).
func (c *Client) ReportDataPage(ctx context.Context, reportID string, req ReportRequest, begin func(), fn func(Row) error) (ReportPage, error) {
	r, cols, body, err := c.prepareReport(ctx, reportID, req)
	if err != nil {
		return ReportPage{}, err
	}
	path := c.v3("/reports/%s/data", url.PathEscape(string(r.ReportID)))
	out := ReportPage{Endpoint: http.MethodPost + " " + path, Request: body, Columns: cols}
	err = c.do(ctx, call{
		method: http.MethodPost, path: path, body: body, auth: authV3,
		handle: func(resp *http.Response) error {
			b, err := ReadBody(resp.Body, MaxRawBody)
			if errors.Is(err, ErrBodyTooLarge) {
				return &BodyError{Path: path, Reason: fmt.Sprintf("body larger than %d bytes", MaxRawBody)}
			} else if err != nil {
				return &BodyError{Path: path, Reason: "read body: " + err.Error()}
			}
			begin()
			meta, err := decodeReportDataOpts(b.Reader(), path, cols, decodeOpts{subtotals: req.IncludeSubtotals, reuse: true}, fn)
			if err != nil {
				b.Release()
				return retryableBody(err, path)
			}
			out.Body, out.Meta = b, meta
			return nil
		},
	})
	return out, err
}

// RawAzurePlan is one v1 azureplan response.
type RawAzurePlan struct {
	Endpoint string            // "GET /api/v1/reports/billing/azureplan"
	Request  []byte            // the query parameters sent, as a JSON object
	Body     []byte            // the response bytes, verbatim
	Lines    []AzurePlanLine   // leaf lines
	Query    map[string]string // the same parameters, decoded
}

// AzurePlanV1Raw is AzurePlanV1 keeping the response bytes.
func (c *Client) AzurePlanV1Raw(ctx context.Context, customerID, period, currency string) (RawAzurePlan, error) {
	p, err := time.Parse("2006-01", period)
	if err != nil {
		return RawAzurePlan{}, fmt.Errorf("ion: AzurePlanV1Raw: period %q is not YYYY-MM", period)
	}
	qm := map[string]string{
		"filter[date_range]":  fmt.Sprintf("m-%d-%d", int(p.Month()), p.Year()),
		"filter[customer_id]": customerID,
	}
	if currency != "" {
		qm["filter[report_currency]"] = currency
	}
	q := url.Values{}
	for k, v := range qm {
		q.Set(k, v)
	}
	reqJSON, err := json.Marshal(qm) // map keys marshal sorted: stable
	if err != nil {
		return RawAzurePlan{}, err
	}
	const path = "/api/v1/reports/billing/azureplan"
	out := RawAzurePlan{Endpoint: http.MethodGet + " " + path, Request: reqJSON, Query: qm}
	err = c.do(ctx, call{
		method: http.MethodGet, path: path, query: q, auth: authV1,
		handle: func(resp *http.Response) error {
			b, err := readRaw(resp.Body, path)
			if err != nil {
				return err
			}
			var lines []AzurePlanLine
			delivered := 0
			if err := decodeAzurePlan(bytes.NewReader(b), path, c.redact, func(l AzurePlanLine) error {
				lines = append(lines, l)
				return nil
			}, &delivered); err != nil {
				return retryableBody(err, path)
			}
			out.Body, out.Lines = b, lines
			return nil
		},
	})
	return out, err
}

// retryableBody marks a decode failure as one that reached no caller (Rows 0), so the client
// repeats the request: raw fetches hand rows over only after the whole body decoded.
func retryableBody(err error, path string) error {
	var be *BodyError
	if errors.As(err, &be) {
		c := *be
		c.Rows = 0
		return &c
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return err
	}
	return &BodyError{Path: path, Reason: err.Error()}
}

func readRaw(r io.Reader, path string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxRawBody+1))
	if err != nil {
		return nil, &BodyError{Path: path, Reason: "read body: " + err.Error()}
	}
	if len(b) > MaxRawBody {
		return nil, &BodyError{Path: path, Reason: fmt.Sprintf("body larger than %d bytes", MaxRawBody)}
	}
	return b, nil
}
