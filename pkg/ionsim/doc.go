// Package ionsim is a deterministic, in-process sandbox of TD SYNNEX StreamOne Ion (v3 OAuth,
// customers, subscriptions, reports; v1 billing), built from shared/research/ion-api.md only, so
// that the Ion client (pkg/ion), written independently from the same note, is tested against an
// honest second reading of it. It shares no types with the client on purpose.
//
// Everything a run serves is a pure function of Options: data come from a splitmix64 hash of
// (seed, account, customer, item, day) rather than a random stream, so any line can be produced
// on its own and report rows are generated while they are written. A million-row report costs a
// few MB of heap (BenchmarkMillionRows); only aggregations whose groups cannot be flushed per
// customer or per item hold their grouped result.
//
// # Endpoints
//
//	POST /oauth/token                      form grant_type=refresh_token&refresh_token=…
//	POST /oauth/validateAccess             form access_token=…
//	GET  /api/v3/accounts/{a}/customers    pageSize | pageToken (page_size, page_token)
//	GET  /api/v3/accounts/{a}/customers/{id}[/cloudProfiles?providerId=30]
//	GET  /api/v3/accounts/{a}/subscriptions?pagination.limit=&pagination.offset=&customerId=
//	GET  /api/v3/accounts/{a}/reports?module=      GET …/reports/{id}
//	POST /api/v3/accounts/{a}/reports/{id}/data    POST …/reports/{id}/reportDataCsv
//	GET  /api/v1/customers?limit=&offset=          (Basic API key:secret)
//	GET  /api/v1/reports/billing/azureplan?filter[date_range]=m-M-YYYY&filter[customer_id]=&filter[report_currency]=
//
// # Wire decisions for the note's unknowns (§9)
//
//   - OAuth: refresh tokens are single-use; a used one → 400 {"error":"cannot validate token:
//     refresh token already used"} (counted as Stats.RefreshReuse); unknown → 400 with the vendor's
//     "cannot validate token: redis: nil". The old access token stays valid until it expires.
//     Faults (429/503) on /oauth/* are decided before the token is touched; LoseTokenResponse
//     rotates and then drops the connection.
//   - 401 (missing, unknown or expired bearer): body per Variant.UnauthorizedBody — empty,
//     the v3 envelope with error UNAUTHENTICATED, or text/plain "Unauthorized". A token of another
//     account → 403 PERMISSION_DENIED "permission denied to access accounts/<id>".
//   - Customers pageSize above Variant.MaxPageSize is silently capped (a short page is not the
//     last page; only an absent nextPageToken is). pageSize=0 with a token means 100. Tokens are
//     opaque and signed; a forged one is a 400 INVALID_ARGUMENT.
//   - Report data has no paging. The effective cap is min(rowsLimit, Variant.RowsCap) (0 = none);
//     rows beyond it are counted into availableRowsCount but not written. The CSV endpoint applies
//     the same cap and, as documented, carries only resultCount, so its truncation is invisible.
//   - Grouping: rows are grouped by every selected non-measure column in the order first seen;
//     measures (the MONEY columns, usage, seat_count, period_quantity) are SUMmed. Selecting
//     customer_id + invoice_currency + seller_cost_invoice is the control query and equals
//     GroundTruth exactly. A request without selectedColumns gets the saved selection
//     (defaultSelection); without dateRangeOption, LAST_MONTH.
//   - Variant.Daily: usage_starttime/usage_endtime carry the usage day (one row per item and day
//     for a leaf selection) or the month's bounds (one row per item and month). Licence and credit
//     lines bill one day a month either way. The date filter always works on the usage day.
//   - Variant.EndDateInclusive: a fixed endDate includes the day it falls on (true) or is an
//     exclusive instant (false); [first 00:00:00Z, last 23:59:59Z] is the whole month in both.
//     Rows' Charge EndDate follows the same convention (last day, or the midnight after).
//     Relative ranges ending "today" end at today 00:00 (the real MONTH_TO_DATE example); closed
//     ones (LAST_MONTH, …) end at their last day (inclusive) or the next midnight (exclusive).
//   - Variant.SubtotalRows: after each customer's rows (when the selection pins rows to one
//     customer) a subtotal row, and a grand total row at the end. In those rows every grouping cell
//     is {"valueType":"STRING","stringValue":""} except the first grouping cell, which reads
//     "Subtotal" or "Total"; measures hold the sums. They count in resultCount and
//     availableRowsCount. A client skips rows whose first grouping cell is STRING-typed where the
//     column is not, or reads "Subtotal"/"Total".
//   - ReportValue typing: customer_id, reseller_id, price_book_id are INT with intValue as an int64
//     string; dates DATE with dateValue RFC 3339 (empty → no dateValue); usage and prices FLOAT
//     with floatValue as a JSON number; money MONEY with moneyValue{currency,value}, value written
//     from the decimal with 10 dp as a JSON number, or as a string with Variant.MoneyAsString.
//     Nothing on the money path goes through float64. CSV cells carry the same text; CSV headers
//     are columnHeading ("Seller Cost (EUR)"); *_raw and *_invoice headings add the currency too.
//   - Currency: one currency per account (Options.Currency) for provider and invoice columns, so
//     *_raw = *_invoice = the plain column; another selectedCurrency → 400 INVALID_ARGUMENT.
//   - Charge Type values: Usage (Azure consumption), Purchase (licence cycle charges, seat count,
//     no meter, empty entitlement_id, cloud_account_number = the licence subscription) and Credit
//     (negative amounts, product "Azure Credit"). Usage Type: Consumption | License; Type:
//     Azure plan | NCE. Seller cost < customer cost on every non-credit line;
//     margin = customer − seller exactly; MSRP = seller × 1.191.
//   - Rate limits: none unless Variant.RateLimit429 (RateLimitRPS per account per second of the
//     sim clock → 429 RESOURCE_EXHAUSTED with Retry-After). Faults.Rate429/Rate503 inject more,
//     picked from hash(seed, request number).
//   - The current month has data for days before today (Options.Now) only.
//   - v1: customer ids equal the v3 ids; the tree is customer → subscription (Azure entitlement
//     or licence subscription GUID) → product (meter category or licence) → sku (meter name or
//     licence), price = customer cost, cost = seller cost, 10-dp strings, unit absent on licence
//     and credit lines. Its cost totals equal GroundTruth for the month.
package ionsim
