// Command transformer runs the transformer service alone against the NATS server or cluster in NATS_URL.
package main

import (
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/transformer"
)

func main() { service.Main(transformer.Name, transformer.Run) }
