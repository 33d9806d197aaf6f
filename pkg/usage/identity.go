package usage

import (
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/events"
)

// RecordID is the line's x_RecordId (DESIGN.md "Identity"): UUIDv5 of account,
// BillingPeriodStart, source mode, column-set version and every grouping column of the line as
// "key=value", keys sorted. The pinned column-set version fixes which keys exist, so sorted
// order is a fixed order; naming each key keeps an empty column from shifting the others.
// Values are canonical so wire format does not change identity: dates become their UTC
// instant, the resource URI is lower-cased (Azure ids are case-insensitive), the rest trimmed.
func RecordID(pc PageContext, l Line) uuid.UUID {
	start, _, _ := pc.periodBounds()
	// = events.RecordID(…, "key=value"…), without a string per part or a key per row.
	key := recordIDKeys.Get().(*events.RecordIDKey)
	defer recordIDKeys.Put(key)
	key.Reset(pc.Account, start, pc.Mode, pc.ColumnSetVersion)
	for _, k := range l.groupingKeys() {
		key.Add(k, "=", canonical(k, l.Get(k)))
	}
	return key.ID()
}

var recordIDKeys = sync.Pool{New: func() any { return new(events.RecordIDKey) }}

func canonical(key, v string) string {
	switch key {
	case ColUsageStart, ColUsageEnd:
		if t, _, err := parseDate(v); err == nil {
			return t.Format("2006-01-02T15:04:05Z")
		}
	case ColResourceURI:
		return strings.ToLower(v)
	}
	return v
}
