// Command fetcher runs the fetcher service alone against the NATS server or cluster in NATS_URL.
package main

import (
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/fetcher"
)

func main() { service.Main(fetcher.Name, fetcher.Run) }
