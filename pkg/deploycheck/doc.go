// Package deploycheck holds no code, only tests: they check the deployment files at the
// repository root (docker-compose.yml, deploy/Dockerfile, deploy/nats/*.conf,
// deploy/config/compose.yaml) with the same parsers that Docker Compose and nats-server use, so a
// broken path, route or config key fails `go test` instead of `docker compose up`.
//
// The tests find the repository root by walking up from the package directory to go.work.
package deploycheck
