"""Developer tooling: the `make run` runner, the demo and the dev stack file. Never imported by an area."""
