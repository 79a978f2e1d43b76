"""The assembly: the app factory, the route list, the worker settings and the CLI."""
