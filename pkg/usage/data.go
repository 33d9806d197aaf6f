package usage

import (
	"embed"
	"encoding/csv"
	"fmt"
	"io"
)

// The lookup tables are Microsoft's FinOps toolkit open data (MIT, see data/LICENSE and
// data/README.md). They are embedded so a record never depends on files at run time.
//
//go:embed data/Services.csv data/PricingUnits.csv data/Regions.csv data/LICENSE data/README.md
var dataFS embed.FS

// readCSV returns the rows of an embedded CSV as maps from header to cell.
func readCSV(name string) ([]map[string]string, error) {
	f, err := dataFS.Open("data/" + name)
	if err != nil {
		return nil, fmt.Errorf("usage: open %s: %w", name, err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("usage: %s header: %w", name, err)
	}
	var rows []map[string]string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("usage: %s: %w", name, err)
		}
		row := make(map[string]string, len(header))
		for i, h := range header {
			if i < len(rec) {
				row[h] = rec[i]
			}
		}
		rows = append(rows, row)
	}
}
