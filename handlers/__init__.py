"""docpipe's Lambda entry points, one module per stage: ``lambda_handler`` (a Powertools batch
call) and its ``record_handler``. The stages themselves are in ``shared.stages``."""
