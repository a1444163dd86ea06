"""docpipe's stage handlers: one module per stage, each a Powertools SQS batch handler."""
