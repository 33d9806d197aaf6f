package deploycheck

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/ionusage/connector/pkg/config"
)

// services are the binaries deploy/Dockerfile can build (its SERVICE build argument).
var services = []string{"fetcher", "transformer", "publisher", "scheduler", "ionconnector"}

const (
	composeFile    = "docker-compose.yml"
	natsConfGlob   = "deploy/nats/*.conf"
	serviceConfig  = "deploy/config/compose.yaml"
	natsNodes      = 3
	natsCluster    = "ionconnector"
	natsConfTarget = "/etc/nats/nats.conf"
	configTarget   = "/etc/ionconnector/config.yaml"
	healthPort     = "8080"
)

// repoRoot walks up from the package directory to the directory holding go.work.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work in any parent directory: deploycheck must run inside the repository")
		}
		dir = parent
	}
}

// loadCompose loads docker-compose.yml the way `docker compose` does, with the repository root
// as project directory and without the caller's environment (the file must not depend on it).
func loadCompose(t *testing.T, root string) *types.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, composeFile)},
		cli.WithWorkingDirectory(root),
		cli.WithName("ionconnector"),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("load %s: %v", composeFile, err)
	}
	return project
}

// hostPath makes a compose path absolute; the loader resolves most paths already.
func hostPath(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

func mustExist(t *testing.T, what, path string, wantDir bool) {
	t.Helper()
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		t.Errorf("%s %s: %v", what, path, err)
	case wantDir && !fi.IsDir():
		t.Errorf("%s %s is not a directory", what, path)
	case !wantDir && fi.IsDir():
		t.Errorf("%s %s is a directory, want a file", what, path)
	}
}

func TestComposeServices(t *testing.T) {
	project := loadCompose(t, repoRoot(t))
	want := []string{"billingsim", "fetcher", "ionsim", "publisher", "scheduler", "transformer"}
	for i := 1; i <= natsNodes; i++ {
		want = append(want, fmt.Sprintf("nats-%d", i))
	}
	sort.Strings(want)
	got := project.ServiceNames()
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services = %v, want %v", got, want)
	}

	for _, name := range []string{"fetcher", "transformer", "publisher", "scheduler"} {
		svc := project.Services[name]
		url := svc.Environment["NATS_URL"]
		if url == nil || strings.Count(*url, "nats://") != natsNodes {
			t.Errorf("%s: NATS_URL = %v, want all %d cluster nodes", name, url, natsNodes)
		}
		if !slices.Contains(svc.Command, "--config") {
			t.Errorf("%s: command %q has no --config", name, svc.Command)
		}
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 ||
			!strings.Contains(strings.Join(svc.HealthCheck.Test, " "), "/healthz") {
			t.Errorf("%s: no /healthz health check", name)
		}
		for i := 1; i <= natsNodes; i++ {
			if _, ok := svc.DependsOn[fmt.Sprintf("nats-%d", i)]; !ok {
				t.Errorf("%s: does not depend on nats-%d", name, i)
			}
		}
	}
}

func TestComposeBuilds(t *testing.T) {
	root := repoRoot(t)
	project := loadCompose(t, root)
	built := 0
	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		if svc.Build == nil {
			continue
		}
		built++
		t.Run(name, func(t *testing.T) {
			b := svc.Build
			ctxDir := hostPath(root, b.Context)
			mustExist(t, "build context", ctxDir, true)
			if filepath.Clean(ctxDir) != filepath.Clean(root) {
				t.Errorf("build context %s, want the repository root (go.work must be in the context)", ctxDir)
			}
			dockerfile := b.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(ctxDir, dockerfile)
			}
			mustExist(t, "Dockerfile", dockerfile, false)

			arg := b.Args["SERVICE"]
			if arg == nil || *arg == "" {
				t.Fatalf("build arg SERVICE is not set")
			}
			if !slices.Contains(services, *arg) {
				t.Fatalf("build arg SERVICE = %q, want one of %v", *arg, services)
			}
			// The Dockerfile builds ./services/$SERVICE/cmd/$SERVICE.
			mustExist(t, "main package", filepath.Join(root, "services", *arg, "cmd", *arg), true)
		})
	}
	if built == 0 {
		t.Fatal("no service has a build section")
	}
}

func TestComposeMounts(t *testing.T) {
	root := repoRoot(t)
	project := loadCompose(t, root)
	for _, name := range project.ServiceNames() {
		for _, v := range project.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			mustExist(t, name+": bind mount", hostPath(root, v.Source), false)
		}
	}
	for name, s := range project.Secrets {
		if s.File == "" {
			t.Errorf("secret %s has no file", name)
			continue
		}
		mustExist(t, "secret "+name, hostPath(root, s.File), false)
	}
	for name, c := range project.Configs {
		if c.File != "" {
			mustExist(t, "config "+name, hostPath(root, c.File), false)
		}
	}
	for _, name := range project.ServiceNames() {
		for _, s := range project.Services[name].Secrets {
			if _, ok := project.Secrets[s.Source]; !ok {
				t.Errorf("%s uses undefined secret %s", name, s.Source)
			}
		}
	}
}

// TestComposeNATSNodes checks that compose node nats-N mounts deploy/nats/nats-N.conf.
func TestComposeNATSNodes(t *testing.T) {
	root := repoRoot(t)
	project := loadCompose(t, root)
	for i := 1; i <= natsNodes; i++ {
		name := fmt.Sprintf("nats-%d", i)
		svc, ok := project.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		want := filepath.Join(root, "deploy", "nats", name+".conf")
		found := false
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind && v.Target == natsConfTarget {
				found = hostPath(root, v.Source) == want
			}
		}
		if !found {
			t.Errorf("%s does not mount %s at %s", name, want, natsConfTarget)
		}
	}
}

func TestNATSClusterConfigs(t *testing.T) {
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, natsConfGlob))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != natsNodes {
		t.Fatalf("%d files match %s, want %d", len(files), natsConfGlob, natsNodes)
	}
	names := map[string]string{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			o, err := server.ProcessConfigFile(f)
			if err != nil {
				t.Fatalf("nats-server rejects the config: %v", err)
			}
			if want := strings.TrimSuffix(filepath.Base(f), ".conf"); o.ServerName != want {
				t.Errorf("server_name = %q, want %q (the compose hostname)", o.ServerName, want)
			}
			if prev, dup := names[o.ServerName]; dup {
				t.Errorf("server_name %q also in %s", o.ServerName, prev)
			}
			names[o.ServerName] = f
			if !o.JetStream {
				t.Error("JetStream is not enabled")
			}
			if o.StoreDir == "" {
				t.Error("jetstream store_dir is not set")
			}
			if o.JetStreamMaxStore <= 0 {
				t.Error("jetstream max_file_store is not set")
			}
			if o.Cluster.Name != natsCluster {
				t.Errorf("cluster name = %q, want %q", o.Cluster.Name, natsCluster)
			}
			if o.Cluster.Port != 6222 || o.Port != 4222 || o.HTTPPort != 8222 {
				t.Errorf("ports client/cluster/http = %d/%d/%d, want 4222/6222/8222", o.Port, o.Cluster.Port, o.HTTPPort)
			}
			if o.LameDuckDuration <= 0 {
				t.Error("lame_duck_duration is not set")
			}
			var hosts []string
			for _, r := range o.Routes {
				if r.Scheme != "nats-route" || r.Port() != "6222" {
					t.Errorf("route %s, want nats-route://<node>:6222", r)
				}
				hosts = append(hosts, r.Hostname())
			}
			sort.Strings(hosts)
			if want := []string{"nats-1", "nats-2", "nats-3"}; !slices.Equal(hosts, want) {
				t.Errorf("routes to %v, want %v", hosts, want)
			}
		})
	}
	if len(names) != natsNodes {
		t.Errorf("%d distinct server names, want %d", len(names), natsNodes)
	}
}

// TestServiceConfig loads deploy/config/compose.yaml with config.Load, as each service does at
// start-up, in the environment compose gives that service, and checks that every secret file the
// config names is a secret the service's container gets.
func TestServiceConfig(t *testing.T) {
	root := repoRoot(t)
	project := loadCompose(t, root)
	for _, name := range []string{"fetcher", "transformer", "publisher", "scheduler"} {
		t.Run(name, func(t *testing.T) {
			svc := project.Services[name]
			var path string
			for _, v := range svc.Volumes {
				if v.Type == types.VolumeTypeBind && v.Target == configTarget {
					path = hostPath(root, v.Source)
				}
			}
			if path != filepath.Join(root, serviceConfig) {
				t.Fatalf("mounts %q at %s, want %s", path, configTarget, serviceConfig)
			}
			env := func(k string) string {
				if v := svc.Environment[k]; v != nil {
					return *v
				}
				return ""
			}
			c, err := config.Load(path, env)
			if err != nil {
				t.Fatalf("config.Load: %v", err)
			}
			if c.NATS.URL == "" {
				t.Error("nats.url is empty: a standalone service needs NATS_URL")
			}
			if c.NATS.Replicas != natsNodes {
				t.Errorf("nats.replicas = %d, want %d (one per cluster node)", c.NATS.Replicas, natsNodes)
			}
			if _, port, _ := strings.Cut(c.HTTP.Listen, ":"); port != healthPort {
				t.Errorf("http.listen = %q, want port %s (the compose health check)", c.HTTP.Listen, healthPort)
			}
			if len(c.Accounts) == 0 {
				t.Error("no accounts")
			}
			if c.Sinks.HTTP == nil {
				t.Error("no HTTP sink")
			}

			files := []string{c.TokenKeyFile}
			for _, a := range c.Accounts {
				files = append(files, a.RefreshTokenFile, a.APIKeyFile, a.APISecretFile)
			}
			if c.Sinks.HTTP != nil {
				files = append(files, c.Sinks.HTTP.SecretFile)
			}
			mounted := map[string]bool{}
			for _, s := range svc.Secrets {
				target := s.Target
				if target == "" {
					target = s.Source
				}
				if !filepath.IsAbs(target) {
					target = "/run/secrets/" + target
				}
				mounted[target] = true
			}
			for _, f := range files {
				if f != "" && !mounted[f] {
					t.Errorf("config names %s, which is not a secret of the %s container", f, name)
				}
			}
		})
	}
}
