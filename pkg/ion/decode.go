package ion

import "io"

// Stored bodies. The fetcher keeps Ion's response bytes as raw pages and the transformer decodes
// them later, without calling Ion: these are the same streaming decoders the client uses.

// DecodeReportData decodes a stored POST …/reports/{id}/data response body against the columns
// that were requested. Subtotal rows are skipped.
func DecodeReportData(body io.Reader, cols []ReportColumn, fn func(Row) error) (ReportMeta, error) {
	return decodeReportData(body, "stored report data", cols, false, fn)
}

// DecodeReportDataTransient is DecodeReportData handing fn a row whose Values the next row
// overwrites, sparing an allocation per row: fn copies what it keeps.
func DecodeReportDataTransient(body io.Reader, cols []ReportColumn, fn func(Row) error) (ReportMeta, error) {
	return decodeReportDataOpts(body, "stored report data", cols, decodeOpts{reuse: true}, fn)
}

// DecodeReportCSV decodes a stored POST …/reports/{id}/reportDataCsv response body, by position
// against the columns that were requested once the header row has been checked to name them in
// that order. Subtotal rows are skipped.
func DecodeReportCSV(body io.Reader, cols []ReportColumn, fn func(Row) error) (ReportMeta, error) {
	return decodeReportCSV(body, "stored report csv", cols, false, fn)
}

// DecodeAzurePlan decodes a stored v1 reports/billing/azureplan body, yielding leaf lines.
func DecodeAzurePlan(body io.Reader, fn func(AzurePlanLine) error) error {
	var delivered int
	return decodeAzurePlan(body, "stored azureplan", nil, fn, &delivered)
}
