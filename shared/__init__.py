"""docpipe's shared code: models, settings, errors, ports, adapters, runtimes."""
