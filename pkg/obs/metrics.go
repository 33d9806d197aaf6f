package obs

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes the connector's own metric names (ionconnector_fetcher_pages_total).
const Namespace = "ionconnector"

// NewRegistry returns a registry with the Go runtime and process collectors. A fresh registry
// rather than prometheus.DefaultRegisterer keeps tests and in-process services apart.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(runtimeCollectors()...) // cannot clash in an empty registry
	return reg
}

func runtimeCollectors() []prometheus.Collector {
	return []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
}

// registerRuntime adds the Go and process collectors unless reg already has them.
func registerRuntime(reg prometheus.Registerer) error {
	for _, c := range runtimeCollectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
