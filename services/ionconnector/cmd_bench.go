package ionconnector

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/obs"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("bench", "measure throughput and memory of the whole pipeline against the raw JetStream ceiling", benchCmd)
}

// BenchResult is the last stdout line of bench.
type BenchResult struct {
	Records          int     `json:"records"`
	RecordsPerS      float64 `json:"records_per_s"`       // end to end: sync request → reconciled
	CeilingMsgsPerS  float64 `json:"ceiling_msgs_per_s"`  // nats.go async publish + durable consume/ack
	Ratio            float64 `json:"ratio"`               // records_per_s / ceiling_msgs_per_s
	PeakRSSMB        float64 `json:"peak_rss_mb"`         // peak resident set of the pipeline phase, whole process (server included)
	CeilingPeakRSSMB float64 `json:"ceiling_peak_rss_mb"` // peak resident set up to the end of the ceiling phase
	// PeakRSSReset is false where the kernel's peak could not be reset after the ceiling: then
	// peak_rss_mb is the whole run's peak, ceiling included.
	PeakRSSReset     bool    `json:"peak_rss_reset"`
	MemoryLimit      int64   `json:"memory_limit"` // the Go soft memory limit in bytes (GOMEMLIMIT); 0 when none
	StoredBytes      uint64  `json:"stored_bytes"` // JetStream store usage after the run
	RecordBytes      int     `json:"record_bytes"` // average USAGE message size (the ceiling's size)
	Customers        int     `json:"customers"`
	Meters           int     `json:"meters"`
	Pages            int     `json:"pages"`
	PipelineSeconds  float64 `json:"pipeline_s"`
	CeilingSeconds   float64 `json:"ceiling_s"`
	Reconciled       bool    `json:"reconciled"`
	Cores            int     `json:"cores"`
	DataDirFreeBytes uint64  `json:"-"`
}

// benchRecordBytes is the typical usage.v1.record message (payload and headers) of the
// sandbox, measured as the USAGE stream's bytes per message; --record-bytes overrides it.
const benchRecordBytes = 2300

// benchMemoryLimit is the Go soft memory limit bench runs with unless GOMEMLIMIT is set (see
// docs/performance.md, "Memory").
const benchMemoryLimit = 416 << 20

// benchBytesPerRecord estimates the store and CSV bytes one record costs across the run (raw
// body and event, usage record, ledger history, CSV row, the ceiling's stream), with slack.
const benchBytesPerRecord = 8 << 10

func benchCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	records := fs.Int("records", 1_000_000, "records the sandbox generates (approximately) and the ceiling publishes")
	dataDir := fs.String("data-dir", os.TempDir(), "directory for the run's store and CSV files (a fresh subdirectory, removed afterwards)")
	jsonOnly := fs.Bool("json-only", false, "print only the JSON line (no progress, no summary)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the pipeline phase to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile, taken when the Go heap was at its largest, to this file")
	recordBytes := fs.Int("record-bytes", benchRecordBytes, "message size of the ceiling run")
	keep := fs.Bool("keep", false, "keep the run's directory (store, CSV, log)")
	timeout := fs.Duration("timeout", 2*time.Hour, "give up after this long")
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	if *records < 1 || *recordBytes < 64 {
		fmt.Fprintln(io.Stderr, "bench: --records must be positive and --record-bytes at least 64")
		return service.ExitUsage
	}
	if io.Env("NATS_URL") != "" {
		fmt.Fprintln(io.Stderr, "bench: runs on its own embedded server; unset NATS_URL")
		return service.ExitUsage
	}
	errOut := io.Stderr
	if *jsonOnly {
		errOut = discard{}
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(io.Stderr, "bench: %v\n", err)
		return service.ExitFailed
	}
	need := benchDiskNeed(*records, *recordBytes)
	free, err := freeBytes(*dataDir)
	if err != nil {
		fmt.Fprintf(io.Stderr, "bench: free space of %s: %v\n", *dataDir, err)
		return service.ExitFailed
	}
	if free < need {
		fmt.Fprintf(io.Stderr, "bench: not enough disk in %s: %d records need about %s, %s free; pass a smaller --records or another --data-dir\n",
			*dataDir, *records, humanBytes(need), humanBytes(free))
		return service.ExitFailed
	}
	dir, err := os.MkdirTemp(*dataDir, "ionconnector-bench-")
	if err != nil {
		fmt.Fprintf(io.Stderr, "bench: %v\n", err)
		return service.ExitFailed
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	var memLimit int64
	if io.Env("GOMEMLIMIT") == "" {
		// The runtime read GOMEMLIMIT at start; without it, the pipeline runs as a deployment
		// should (the raw ceiling runs without one: it is nats, not us).
		memLimit = benchMemoryLimit
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	res, err := runBench(ctx, benchOptions{
		Records: *records, RecordBytes: *recordBytes, Dir: dir, CPUProfile: *cpuProfile, MemProfile: *memProfile, MemoryLimit: memLimit, Out: errOut,
	})
	if err != nil {
		fmt.Fprintf(io.Stderr, "bench: %v\n", err)
		if *keep {
			fmt.Fprintf(io.Stderr, "bench: run directory kept: %s\n", dir)
		}
		return service.ExitFailed
	}
	fmt.Fprintf(errOut, "\n%d records in %.1fs: %.0f records/s end to end · ceiling %.0f msgs/s · ratio %.2f · peak RSS %.0f MB (ceiling %.0f MB) · stored %s\n",
		res.Records, res.PipelineSeconds, res.RecordsPerS, res.CeilingMsgsPerS, res.Ratio, res.PeakRSSMB, res.CeilingPeakRSSMB, humanBytes(res.StoredBytes))
	line, _ := json.Marshal(res)
	fmt.Fprintln(io.Stdout, string(line))
	if !res.Reconciled {
		fmt.Fprintln(io.Stderr, "bench: the run did not reconcile")
		return service.ExitFailed
	}
	return service.ExitOK
}

type benchOptions struct {
	Records, RecordBytes int
	Dir                  string // fresh, owned by the run
	CPUProfile           string
	MemProfile           string
	MemoryLimit          int64     // Go soft memory limit of the pipeline phase; 0: the runtime's (GOMEMLIMIT)
	Out                  io.Writer // progress
}

// benchShape sizes the sandbox for about n records of one 30-day period: rows ≈ customers × 2
// × meters × days. A customer holds at most about 1,500 records (25 meters; the shape of every
// run in docs/performance.md, so figures stay comparable), and small runs still spread over 20 or
// more customers.
func benchShape(n, days int) (customers, meters int) {
	meters = min(25, max(1, n/(2*days*20)))
	per := 2 * meters * days
	customers = max(1, (n+per/2)/per)
	return min(customers, 100000), meters
}

func runBench(ctx context.Context, o benchOptions) (BenchResult, error) {
	res := BenchResult{Cores: runtime.NumCPU()}
	period := time.Now().UTC().AddDate(0, -1, 0).Format("2006-01")
	start, end, err := events.ParsePeriod(period)
	if err != nil {
		return res, err
	}
	days := int(end.Sub(start).Hours() / 24)
	res.Customers, res.Meters = benchShape(o.Records, days)

	logFile, err := os.OpenFile(filepath.Join(o.Dir, "ionconnector.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	logger, err := obs.NewLogger(logFile, "warn", "json")
	if err != nil {
		return res, err
	}

	sim, err := ionsim.New(ionsim.Options{
		Seed: 1, Customers: res.Customers, Meters: res.Meters, Currency: "EUR", Periods: []string{period},
		Variant: ionsim.Variant{Daily: true}, Logger: logger,
	})
	if err != nil {
		return res, err
	}
	if _, err := sim.Start(context.WithoutCancel(ctx), "127.0.0.1:0"); err != nil {
		return res, err
	}
	defer sim.Close()
	tokenFile := filepath.Join(o.Dir, "refresh-token")
	if err := os.WriteFile(tokenFile, []byte(sim.CredentialsFor(demoAccount).RefreshToken), 0o600); err != nil {
		return res, err
	}
	keyFile := filepath.Join(o.Dir, "token-key")
	if _, err := readOrCreateSecret(keyFile, 32); err != nil {
		return res, err
	}
	cfg := config.Default()
	cfg.Embedded.DataDir = filepath.Join(o.Dir, "nats")
	cfg.Embedded.Listen = config.ListenOff
	cfg.TokenKeyFile = keyFile
	// The sandbox has no rate limit: let the fetcher go as fast as it can.
	cfg.Ion.RequestsPerSecond, cfg.Ion.Burst = 10000, 1000
	cfg.Accounts = []config.Account{{
		ID: demoAccount, Name: "Bench partner", Auth: config.AuthV3, IonURL: sim.BaseURL(),
		RefreshTokenFile: tokenFile, Currency: "EUR", ClosingDay: config.DefaultClosingDay,
	}}
	cfg.Sinks.CSV = &config.CSVSink{Dir: filepath.Join(o.Dir, "focus")}
	if err := cfg.Validate(); err != nil {
		return res, fmt.Errorf("bench configuration: %w", err)
	}
	h, err := startHost(ctx, cfg, logger)
	if err != nil {
		return res, err
	}
	defer h.Close()

	// 1. The ceiling: raw nats.go on the same server, before the pipeline runs.
	fmt.Fprintf(o.Out, "ceiling: %d messages of %d bytes, async publish with Nats-Msg-Id, durable pull consumer acking…\n", o.Records, o.RecordBytes)
	nc, err := h.Embedded.Connect(ctx, "ionconnector-bench")
	if err != nil {
		return res, err
	}
	cs, err := benchCeiling(ctx, nc, o.Records, o.RecordBytes, min(cfg.Streams.DuplicateWindow, bus.UsageDuplicateWindow))
	nc.Close()
	if err != nil {
		return res, fmt.Errorf("ceiling: %w", err)
	}
	res.CeilingSeconds = cs
	res.CeilingMsgsPerS = float64(o.Records) / cs
	fmt.Fprintf(o.Out, "ceiling: %.0f msgs/s (%.1fs)\n", res.CeilingMsgsPerS, cs)
	// The ceiling's memory is not the pipeline's: hand it back to the OS, then restart the
	// kernel's peak so peak_rss_mb measures the pipeline alone.
	res.CeilingPeakRSSMB = peakRSSMB()
	runtime.GC() // twice: sync.Pool buffers survive one collection
	debug.FreeOSMemory()
	if err := resetPeakRSS(); err != nil {
		fmt.Fprintf(o.Out, "peak RSS not reset (%v): peak_rss_mb includes the ceiling phase\n", err)
	} else {
		res.PeakRSSReset = true
	}
	if o.MemoryLimit > 0 {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(o.MemoryLimit))
	}
	if l := debug.SetMemoryLimit(-1); l < math.MaxInt64 {
		res.MemoryLimit = l
	}

	// 2. The whole pipeline, sync request to reconciliation.
	fmt.Fprintf(o.Out, "pipeline: period %s, %d customers × 2 entitlements × %d meters × %d days ≈ %d rows\n",
		period, res.Customers, res.Meters, days, res.Customers*2*res.Meters*days)
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	if o.MemProfile != "" {
		stopHeap := watchHeap(o.MemProfile)
		defer stopHeap()
	}
	started := time.Now()
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- runPipeline(runCtx, h.Deps) }()
	defer func() { stopRun(); <-runDone }()
	var prog *progress
	if _, ok := o.Out.(discard); !ok {
		prog = newProgress(o.Out)
	}
	fr, err := followSync(ctx, h.Deps, followOptions{
		Account: demoAccount, Period: period, Mode: config.AuthV3, Reason: "bench", RequestedBy: "ionconnector bench",
		Progress: prog,
	})
	if err != nil {
		select {
		case err2 := <-runDone:
			runDone <- err2
			if err2 != nil {
				return res, fmt.Errorf("pipeline: %w", err2)
			}
		default:
		}
		return res, err
	}
	elapsed := time.Since(started).Seconds()
	if o.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	res.PipelineSeconds = elapsed
	res.Records = fr.Summary.Records
	res.Pages = fr.Summary.Pages
	res.Reconciled = fr.Summary.Reconciled
	res.RecordsPerS = float64(res.Records) / elapsed
	if res.CeilingMsgsPerS > 0 {
		res.Ratio = res.RecordsPerS / res.CeilingMsgsPerS
	}
	if s, err := h.Deps.JS.Stream(ctx, events.StreamUsage); err == nil {
		if info, err := s.Info(ctx); err == nil && info.State.Msgs > 0 {
			res.RecordBytes = int(info.State.Bytes / info.State.Msgs)
		}
	}
	ai, err := h.Deps.JS.AccountInfo(ctx)
	if err != nil {
		return res, fmt.Errorf("account info: %w", err)
	}
	res.StoredBytes = ai.Store
	res.PeakRSSMB = peakRSSMB()
	return res, nil
}

// benchCeiling publishes n messages of size bytes asynchronously (each with a Nats-Msg-Id)
// while a durable pull consumer consumes and acks them, on a file-storage stream configured like
// USAGE; it returns the seconds until every message was both stored and acked, and deletes the
// stream.
func benchCeiling(ctx context.Context, nc *nats.Conn, n, size int, dupWindow time.Duration) (float64, error) {
	var pubErrs atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { pubErrs.Add(1) }))
	if err != nil {
		return 0, err
	}
	const name = "BENCH_CEILING"
	_ = js.DeleteStream(ctx, name)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{"bench.ceiling.>"}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
		Compression: jetstream.S2Compression, Duplicates: dupWindow, Replicas: 1,
	})
	if err != nil {
		return 0, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000, AckWait: 30 * time.Second,
	})
	if err != nil {
		return 0, err
	}
	var got atomic.Int64
	done := make(chan struct{})
	started := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(500))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()

	payload := benchPayload(size)
	for i := range n {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		m := nats.NewMsg("bench.ceiling." + strconv.Itoa(i%512))
		// A record's body differs from the next one in its ids and amounts, not in its shape.
		b := append([]byte(nil), payload...)
		copy(b[8:], strconv.Itoa(i))
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, "bench-"+strconv.Itoa(i))
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if e := pubErrs.Load(); e > 0 {
		return 0, fmt.Errorf("%d of %d publishes not confirmed", e, n)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("consumer acked %d of %d messages", got.Load(), n)
	}
	return time.Since(started).Seconds(), nil
}

// benchPayload is JSON shaped like a usage record (FOCUS keys, ids, decimals), size bytes long.
func benchPayload(size int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"x_Seq":"00000000","BillingAccountId":"10001","BilledCost":"12.3456789012","BillingCurrency":"EUR",` +
		`"ChargeCategory":"Usage","ServiceName":"Virtual Machines","RegionId":"westeurope","x_RecordId":"3f1c2a9e-8d4b-5b6a-9c1e-7f2d3a4b5c6d"`)
	for i := 0; sb.Len() < size-2; i++ {
		fmt.Fprintf(&sb, `,"x_F%d":"%08x-%d"`, i, uint32(i*2654435761), i*7919)
	}
	sb.WriteString("}")
	b := []byte(sb.String())
	if len(b) > size {
		b = append(b[:size-1], '}')
	}
	return b
}

func benchDiskNeed(records, recordBytes int) uint64 {
	return uint64(records)*uint64(benchBytesPerRecord+recordBytes) + 256<<20
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// resetPeakRSS sets the process's VmHWM back to its current resident set (Linux 4.0 and
// later).
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSSMB is the process's peak resident set (VmHWM), embedded server included; 0 where
// /proc is unavailable.
func peakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fields := strings.Fields(rest) // "123456 kB"
			if len(fields) > 0 {
				kb, err := strconv.ParseFloat(fields[0], 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	return 0
}

func humanBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", b>>10)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// watchHeap samples the Go heap every second and writes a heap profile to path whenever it
// reaches a new high (at most every 2s), so the file shows what the peak was made of.
func watchHeap(path string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var peak uint64
		var last time.Time
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse <= peak*11/10 || time.Since(last) < 2*time.Second {
				continue
			}
			peak, last = ms.HeapInuse, time.Now()
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				_ = f.Close()
			}
		}
	}()
	return func() { close(done); <-finished }
}
