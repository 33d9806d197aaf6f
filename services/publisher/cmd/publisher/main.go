// Command publisher runs the publisher service alone against the NATS server or cluster in NATS_URL.
package main

import (
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/publisher"
)

func main() { service.Main(publisher.Name, publisher.Run) }
