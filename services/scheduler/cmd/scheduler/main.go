// Command scheduler runs the scheduler service alone against the NATS server or cluster in NATS_URL.
package main

import (
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/scheduler"
)

func main() { service.Main(scheduler.Name, scheduler.Run) }
