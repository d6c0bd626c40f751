// Package deploy holds the files of the runlens demo stack that
// docker-compose.yml (at the repository root) builds and mounts: the
// Dockerfiles, Prometheus' configuration and Grafana's provisioning. Its test
// reads them, with docker-compose.yml, and checks them against the code.
package deploy
