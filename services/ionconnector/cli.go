// Package ionconnector is the all-in-one runner and operator CLI: it embeds nats-server, runs
// every service in one process, and hosts the sandboxes and operator commands.
package ionconnector

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ionusage/connector/pkg/service"
)

// IO is the process surface a command sees; tests substitute buffers and a fake environment.
type IO struct {
	Stdout, Stderr io.Writer
	Env            func(string) string
}

type command struct {
	summary string
	run     func(ctx context.Context, io IO, args []string) int
}

// commands is filled by the cmd_*.go files, one command each.
var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, io IO, args []string) int) {
	commands[name] = command{summary: summary, run: run}
}

// Main dispatches to a command and returns the exit code (0 ok, 1 failed, 2 usage or config).
func Main(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(io.Stderr)
		if len(args) == 0 {
			return service.ExitUsage
		}
		return service.ExitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(io.Stderr, "ionconnector: unknown command %q\n\n", args[0])
		usage(io.Stderr)
		return service.ExitUsage
	}
	return c.run(ctx, io, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ionconnector <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'ionconnector <command> --help' for a command's flags.")
}

// parseFlags parses a command's flags; done reports that the caller should return code.
func parseFlags(fs *flag.FlagSet, io IO, args []string) (code int, done bool) {
	fs.SetOutput(io.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return service.ExitOK, true
		}
		return service.ExitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.Stderr, "%s: unexpected arguments: %s\n", fs.Name(), strings.Join(fs.Args(), " "))
		return service.ExitUsage, true
	}
	return 0, false
}

// storeFlags are the --config and --data-dir flags of every command that reads a deployment:
// through NATS_URL when set, else the embedded store of a stopped ionconnector.
func storeFlags(fs *flag.FlagSet, io IO) (cfgPath, dataDir *string) {
	cfgPath = fs.String("config", io.Env("ION_CONNECTOR_CONFIG"), "YAML config file (env ION_CONNECTOR_CONFIG)")
	dataDir = fs.String("data-dir", "", "embedded store of a stopped ionconnector (default: config embedded.data_dir); with NATS_URL set, the running deployment is used instead")
	return cfgPath, dataDir
}
