//go:build ignore

// Command healthprobe is the container health check of the connector images, which have no shell,
// curl or wget. It GETs a URL and exits 0 on a 2xx answer, 1 otherwise:
//
//	healthprobe http://127.0.0.1:8080/healthz
//
// It uses only the standard library and is built by deploy/Dockerfile with
// `GOWORK=off go build deploy/healthprobe/main.go`; the build tag keeps it out of every module.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: healthprobe URL")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthprobe:", err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintln(os.Stderr, "healthprobe:", resp.Status)
		os.Exit(1)
	}
}
