// Command ionconnector runs the whole connector in one process on an embedded NATS server, and
// hosts the operator commands and the sandboxes.
package main

import (
	"context"
	"os"

	"github.com/ionusage/connector/services/ionconnector"
)

func main() {
	os.Exit(ionconnector.Main(context.Background(), os.Args[1:], ionconnector.IO{
		Stdout: os.Stdout, Stderr: os.Stderr, Env: os.Getenv,
	}))
}
