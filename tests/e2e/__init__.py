"""End-to-end tests: loadsvc serve, Prometheus and Alertmanager as real processes on loopback."""
