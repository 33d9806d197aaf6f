// Package bustest starts real, in-process NATS JetStream servers for tests: one node, or a
// three-node cluster. It imports nothing from pkg/bus so that bus's own tests can use it.
package bustest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterSize is the number of nodes StartCluster starts.
const ClusterSize = 3

// readyTimeout bounds server start-up and cluster formation; a shared CI box is slow.
const readyTimeout = 30 * time.Second

// StartServer starts one JetStream node with its store under t.TempDir() and a random loopback
// port, and returns it with a connection. Both are closed when the test ends.
func StartServer(t testing.TB) (*server.Server, *nats.Conn) {
	t.Helper()
	s := startNode(t, &server.Options{
		ServerName: "bustest",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoSigs:     true,
		NoLog:      true,
	})
	nc := connect(t, s.ClientURL())
	return s, nc
}

// JetStream starts one node as StartServer does and returns a JetStream context on its
// connection: the set-up of every test that needs neither the server nor the raw connection.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	_, nc := StartServer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StartCluster starts a ClusterSize-node JetStream cluster (each node with its own store under
// t.TempDir()), waits for a meta leader that sees every peer, and returns the nodes and one
// connection that knows every node's URL, so it survives the loss of any one of them.
func StartCluster(t testing.TB) ([]*server.Server, *nats.Conn) {
	t.Helper()
	ports := FreePorts(t, ClusterSize)
	routes := make([]string, len(ports))
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	servers := make([]*server.Server, ClusterSize)
	urls := make([]string, ClusterSize)
	for i := range servers {
		servers[i] = startNode(t, &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster: server.ClusterOpts{
				Name: "bustest",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			// Every node, including the first, needs routes or the cluster never forms.
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		})
		urls[i] = servers[i].ClientURL()
	}
	WaitForMetaLeader(t, servers)
	return servers, connect(t, strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
}

// WaitForMetaLeader waits until one running node is the JetStream meta leader and sees every node
// in servers as a peer.
func WaitForMetaLeader(t testing.TB, servers []*server.Server) {
	t.Helper()
	Eventually(t, readyTimeout, func() error {
		for _, s := range servers {
			if s.Running() && s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(servers) {
				return nil
			}
		}
		return fmt.Errorf("no JetStream meta leader with %d peers yet", len(servers))
	})
}

// ServerByName returns the node whose ServerName is name, or nil.
func ServerByName(servers []*server.Server, name string) *server.Server {
	for _, s := range servers {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// FreePorts returns n loopback TCP ports that were free a moment ago. Listening on :0 and closing
// is racy, but far less so than fixed port ranges on a box shared by many test runs.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ls := make([]net.Listener, n)
	ports := make([]int, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("bustest: find a free port: %v", err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	// Hold all of them until every one is chosen, so the n ports are distinct.
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// Eventually calls f until it returns nil, failing the test with f's last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bustest: gave up after %s: %v", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func startNode(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("bustest: new server %s: %v", opts.ServerName, err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(readyTimeout) {
		t.Fatalf("bustest: server %s not ready after %s", opts.ServerName, readyTimeout)
	}
	return s
}

func connect(t testing.TB, url string, extra ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("bustest")}, extra...)...)
	if err != nil {
		t.Fatalf("bustest: connect %s: %v", url, err)
	}
	// Registered after the servers' cleanups, so it runs first (t.Cleanup is LIFO).
	t.Cleanup(nc.Close)
	return nc
}
