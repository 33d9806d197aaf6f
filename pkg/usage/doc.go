// Package usage is the pure normalization core: it turns one Ion usage line (v3
// azure_plan_billing row or v1 azureplan leaf) into a FOCUS 1.2 record in the reseller-cost
// view (DESIGN.md "Normalized record"). It does no I/O and imports no broker code, so the
// transformer, replays and tests all get the same answer from the same line.
//
// Money is shopspring decimal parsed from Ion's text and never rounded. Record ids and
// revisions are deterministic (DESIGN.md "Identity").
package usage
